import Foundation
import Hummingbird
import InferOpsCore
import Logging
import ServiceLifecycle
import Synchronization
import Testing

@testable import InferOpsServer

/// 2026-11-29T13:05:00Z, the moment the fixtures' models were changed.
let changedAt = Date(timeIntervalSince1970: 1_795_957_500)

let disabledLlama = Registration(
    model: "llama-3-8b",
    environment: "staging",
    state: .disabled,
    endpoints: [],
    changedBy: UserID("U024BE7LH"),
    changedAt: changedAt,
    reason: "bad answers under load"
)
let removedMistral = Registration(
    model: "mistral-7b",
    environment: "staging",
    state: .removed,
    endpoints: [],
    changedBy: UserID("U0G9QF9C6"),
    changedAt: changedAt,
    reason: "replaced by llama-3-8b."
)
let productionLlama = Registration(
    model: "llama-3-8b",
    environment: "production",
    state: .removed,
    endpoints: [],
    changedBy: UserID("U0PROD"),
    changedAt: changedAt
)
let slashedModel = Registration(
    model: "meta-llama/Llama-3-8B",
    environment: "staging",
    state: .disabled,
    endpoints: [],
    changedBy: UserID("U024BE7LH"),
    changedAt: changedAt,
    reason: "licence review"
)
let enabledQwen = Registration(
    model: "qwen-2-7b",
    environment: "staging",
    state: .enabled,
    endpoints: ["http://10.0.0.9:8000"],
    changedBy: UserID("U024BE7LH"),
    changedAt: changedAt
)
let fixtures = [disabledLlama, removedMistral, productionLlama, slashedModel, enabledQwen]

/// A lookup over fixed registrations, as the daemon's store would answer it.
func lookup(_ registrations: [Registration]) -> DenialLookup {
    { environment, model in
        registrations.first { $0.model == model && (environment == nil || $0.environment == environment) }
    }
}

/// Quiet by default: tests read answers, not logs.
let quietLogger: Logger = {
    var logger = Logger(label: "inferops.http.test")
    logger.logLevel = .critical
    return logger
}()

func makeServer(
    registrations: [Registration] = fixtures,
    checks: [String: ReadinessCheck] = [:],
    readinessTimeout: Duration = .seconds(2),
    deny: DenyBackend.Configuration = .init(
        defaultEnvironment: "staging",
        environments: ["staging", "production"],
        contact: "#ml-platform"
    ),
    metrics: DaemonMetrics = DaemonMetrics(),
    denials: DenialLookup? = nil,
    port: Int = 0,
    onListening: @escaping @Sendable (Int) async -> Void = { _ in }
) throws -> DaemonHTTPServer {
    try DaemonHTTPServer(
        configuration: .init(host: "127.0.0.1", port: port, deny: deny),
        readiness: Readiness(checks: checks, timeout: readinessTimeout),
        metrics: metrics,
        denials: denials ?? lookup(registrations),
        logger: quietLogger,
        onListening: onListening
    )
}

/// The OpenAI error envelope, decoded the way a client SDK reads it.
struct ErrorEnvelope: Decodable, Equatable {
    struct Detail: Decodable, Equatable {
        var message: String
        var type: String
        var param: String?
        var code: String?
    }
    var error: Detail
}

func decodeError(_ body: ByteBuffer) throws -> ErrorEnvelope.Detail {
    try JSONDecoder().decode(ErrorEnvelope.self, from: Data(String(buffer: body).utf8)).error
}

func json(_ text: String) -> ByteBuffer {
    ByteBuffer(string: text)
}

/// The value of one sample line (`name{labels} value`) in a Prometheus exposition, or nil.
func sample(_ exposition: String, _ series: String) -> String? {
    for line in exposition.split(separator: "\n") where line.hasPrefix(series + " ") {
        return String(line.dropFirst(series.count + 1))
    }
    return nil
}

/// Something the test can flip from a check closure.
final class Flag: Sendable {
    private let value: Mutex<Bool>
    init(_ value: Bool) { self.value = Mutex(value) }
    var isSet: Bool { value.withLock { $0 } }
    func set(_ newValue: Bool) { value.withLock { $0 = newValue } }
}

/// Collects what a closure was called with, across tasks.
final class Recorder: Sendable {
    private let storage = Mutex<[String]>([])
    func append(_ value: String) { storage.withLock { $0.append(value) } }
    var values: [String] { storage.withLock { $0 } }
}

/// Runs `server` in a service group, hands the body the bound port, then shuts down gracefully
/// and waits for the server to return, whether the body passed or threw.
func withServer(_ server: DaemonHTTPServer, _ body: (Int) async throws -> Void) async throws {
    let group = ServiceGroup(configuration: .init(services: [server], gracefulShutdownSignals: [], logger: quietLogger))
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        do {
            try await body(try await server.boundPort())
        } catch {
            await group.triggerGracefulShutdown()
            try? await tasks.waitForAll()
            throw error
        }
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
    }
}
