import CWSBridge
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// WebSocket connections over libwebsockets: one lws context, driven by one dedicated thread.
///
/// Why libwebsockets: Debian 12's libcurl is built without WebSocket support, so
/// `URLSessionWebSocketTask` fails at once, and a pure-Swift client would bring SwiftNIO's build.
///
/// Threading: libwebsockets is single-threaded. The C bridge (`CWSBridge`) queues connect, send
/// and close commands under a mutex and wakes the service thread with `lws_cancel_service`, the one
/// call lws allows from another thread; everything else happens on the service thread, which hands
/// events to Swift through an `AsyncStream` per connection. Nothing blocks a Swift concurrency thread.
///
/// Call `shutdown()` when done; dropping the last reference also stops the thread, without waiting.
public final class WebSocketRuntime: WebSocketClient {
    public struct Configuration: Sendable {
        /// A PEM file of extra trusted CAs, added to the system's (test servers); `nil` for only the system's.
        public var certificateAuthorityFile: String?
        /// Sends a PING after the connection was idle this long (whole seconds; 0 disables).
        public var pingInterval: Duration
        /// Hangs up, reported as `closed(1006)`, when nothing valid arrived for this long (whole seconds; 0 disables).
        /// Longer than `pingInterval`, so that a live peer has time to answer.
        public var idleTimeout: Duration
        /// Gives up on TCP, TLS and the handshake after this long (whole seconds; lws checks once a
        /// second). lws also uses it for its other network waits, such as the close handshake.
        public var connectTimeout: Duration
        /// A larger message closes the connection with 1009 instead of filling memory.
        public var maxMessageBytes: Int
        /// Where libwebsockets' own log goes (TLS failure reasons appear only there). lws has one
        /// logger per process: the last runtime started sets it.
        public var logger: Logger

        public init(
            certificateAuthorityFile: String? = nil,
            pingInterval: Duration = .seconds(30),
            idleTimeout: Duration = .seconds(90),
            connectTimeout: Duration = .seconds(10),
            maxMessageBytes: Int = 4 << 20,
            logger: Logger = Logger(label: "inferops.websocket")
        ) {
            self.certificateAuthorityFile = certificateAuthorityFile
            self.pingInterval = pingInterval
            self.idleTimeout = idleTimeout
            self.connectTimeout = connectTimeout
            self.maxMessageBytes = maxMessageBytes
            self.logger = logger
        }
    }

    private let loop: WebSocketLoop

    /// Creates the lws context and starts the service thread.
    /// - Throws: `WebSocketError.startFailed` when either cannot be created.
    public init(configuration: Configuration = Configuration()) throws {
        loop = try WebSocketLoop(configuration: configuration)
        try loop.start()
    }

    deinit {
        loop.requestStop()
    }

    public func connect(to url: WebSocketURL) async throws -> any WebSocketSession {
        try await open(url)
    }

    /// `connect(to:)` with the concrete type.
    public func open(_ url: WebSocketURL) async throws -> WebSocketConnection {
        let loop = self.loop
        let id = loop.nextConnectionID()
        let (events, continuation) = AsyncStream.makeStream(of: WebSocketEvent.self, bufferingPolicy: .unbounded)
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (opening: CheckedContinuation<Void, any Error>) in
                loop.connect(id: id, url: url, opening: opening, events: continuation)
            }
        } onCancel: {
            loop.cancelOpening(id: id)
        }
        return WebSocketConnection(id: id, url: url, events: events, loop: loop)
    }

    /// Stops the service thread: open connections end with `closed(1001)`, later calls fail with
    /// `runtimeStopped`. Returns once the lws context is destroyed. Calling it again is harmless.
    public func shutdown() async {
        await loop.stopAndWait()
    }
}

/// One connection of a `WebSocketRuntime`.
public final class WebSocketConnection: WebSocketSession {
    public let events: AsyncStream<WebSocketEvent>
    /// The URL it was opened with (its `description` hides the query string).
    public let url: WebSocketURL
    private let id: Int64
    private let loop: WebSocketLoop

    init(id: Int64, url: WebSocketURL, events: AsyncStream<WebSocketEvent>, loop: WebSocketLoop) {
        self.id = id
        self.url = url
        self.events = events
        self.loop = loop
    }

    /// A connection nobody holds any more goes away politely.
    deinit {
        loop.close(id: id, code: 1001, reason: "going away")
    }

    public func send(text: String) throws {
        try loop.send(id: id, bytes: Array(text.utf8), binary: false)
    }

    /// Queues a binary message.
    /// - Throws: `WebSocketError.notOpen` once the connection closed or `close` was called.
    public func send(binary: [UInt8]) throws {
        try loop.send(id: id, bytes: binary, binary: true)
    }

    public func close(code: Int = 1000, reason: String = "") {
        loop.close(id: id, code: code, reason: reason)
    }
}

/// The C client handle. The bridge's connect/send/close/stop are thread-safe (a mutex queue plus
/// `lws_cancel_service`); `wsb_run` runs on the service thread only and `wsb_free` once, in deinit.
struct BridgeHandle: @unchecked Sendable {
    let raw: OpaquePointer
}

/// The state shared between callers and the service thread.
final class WebSocketLoop: Sendable {
    struct Entry {
        /// Set until the handshake is done (or failed).
        var opening: CheckedContinuation<Void, any Error>?
        let events: AsyncStream<WebSocketEvent>.Continuation
        let url: WebSocketURL
        /// `close` was called (or the opening cancelled): sends fail from now on.
        var closing = false
        var cancelled = false
    }

    struct State {
        var entries: [Int64: Entry] = [:]
        /// Openings cancelled before they were registered.
        var cancelledEarly: Set<Int64> = []
        var stopping = false
        var exited = false
        var exitWaiters: [CheckedContinuation<Void, Never>] = []
    }

    let handle: BridgeHandle
    let state = Mutex(State())
    private let ids = Atomic<Int64>(0)

    init(configuration: WebSocketRuntime.Configuration) throws {
        installLibraryLog(configuration.logger)
        var options = wsb_options()
        options.ping_after_seconds = UInt16(clamping: configuration.pingInterval.components.seconds)
        options.hangup_after_seconds = UInt16(clamping: configuration.idleTimeout.components.seconds)
        options.connect_timeout_seconds = UInt32(clamping: max(1, configuration.connectTimeout.components.seconds))
        options.max_message_bytes = max(1, configuration.maxMessageBytes)
        options.on_event = bridgeEvent
        var error = [CChar](repeating: 0, count: 256)
        let errorCapacity = error.count
        // The context pointer is filled in below, once `self` exists; no event can fire before `start`.
        let created: OpaquePointer? = withOptionalCString(configuration.certificateAuthorityFile) { caFile in
            options.ca_file = caFile
            return wsb_create(&options, &error, errorCapacity)
        }
        guard let created else {
            throw WebSocketError.startFailed(
                String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            )
        }
        handle = BridgeHandle(raw: created)
    }

    deinit {
        wsb_free(handle.raw)
    }

    func nextConnectionID() -> Int64 {
        ids.wrappingAdd(1, ordering: .relaxed).newValue
    }

    func start() throws {
        // The service thread owns one reference for as long as it runs: events reach `self` through
        // an unretained pointer that is therefore valid during `wsb_run`.
        wsb_set_context(handle.raw, Unmanaged.passUnretained(self).toOpaque())
        let context = Unmanaged.passRetained(self).toOpaque()
        #if canImport(Darwin)
            var thread: pthread_t?
        #else
            var thread = pthread_t()
        #endif
        let rc = pthread_create(
            &thread,
            nil,
            { argument in
                let context: UnsafeMutableRawPointer? = argument
                if let context {
                    Unmanaged<WebSocketLoop>.fromOpaque(context).takeRetainedValue().run()
                }
                return nil
            },
            context
        )
        guard rc == 0 else {
            Unmanaged<WebSocketLoop>.fromOpaque(context).release()
            state.withLock { $0.exited = true }
            throw WebSocketError.startFailed("could not start the WebSocket thread (errno \(rc))")
        }
        // Nobody joins the service thread; shutdown waits on a continuation instead.
        #if canImport(Darwin)
            if let thread { pthread_detach(thread) }
        #else
            pthread_detach(thread)
        #endif
    }

    private func run() {
        wsb_set_thread_name("lws-service")
        wsb_run(handle.raw)
        let (waiters, leftovers) = state.withLock { state in
            state.stopping = true
            state.exited = true
            let waiters = state.exitWaiters
            state.exitWaiters.removeAll()
            let leftovers = Array(state.entries.values)
            state.entries.removeAll()
            return (waiters, leftovers)
        }
        // The bridge reports every connection's end before wsb_run returns; this is a backstop.
        for entry in leftovers {
            entry.opening?.resume(throwing: WebSocketError.runtimeStopped)
            entry.events.yield(.closed(code: 1001, reason: "the WebSocket runtime stopped"))
            entry.events.finish()
        }
        for waiter in waiters { waiter.resume() }
    }

    func connect(
        id: Int64,
        url: WebSocketURL,
        opening: CheckedContinuation<Void, any Error>,
        events: AsyncStream<WebSocketEvent>.Continuation
    ) {
        enum Outcome { case registered, cancelled, stopped }
        let outcome = state.withLock { state -> Outcome in
            if state.cancelledEarly.remove(id) != nil { return .cancelled }
            if state.stopping { return .stopped }
            state.entries[id] = Entry(opening: opening, events: events, url: url)
            return .registered
        }
        switch outcome {
        case .cancelled:
            events.finish()
            opening.resume(throwing: CancellationError())
        case .stopped:
            events.finish()
            opening.resume(throwing: WebSocketError.runtimeStopped)
        case .registered:
            let rc = wsb_connect(handle.raw, id, url.host, Int32(url.port), url.path, url.secure ? 1 : 0)
            if rc != 0 {
                // Stopped meanwhile; the entry may already have been failed by `run`.
                if let entry = state.withLock({ $0.entries.removeValue(forKey: id) }) {
                    entry.events.finish()
                    entry.opening?.resume(throwing: WebSocketError.runtimeStopped)
                }
            }
        }
    }

    func cancelOpening(id: Int64) {
        let abort = state.withLock { state -> Bool in
            guard state.entries[id] != nil else {
                state.cancelledEarly.insert(id)
                return false
            }
            guard state.entries[id]?.opening != nil else { return false }  // already open: the caller closes it
            state.entries[id]?.cancelled = true
            state.entries[id]?.closing = true
            return true
        }
        if abort { _ = wsb_close(handle.raw, id, 1000, "cancelled") }
    }

    func send(id: Int64, bytes: [UInt8], binary: Bool) throws(WebSocketError) {
        let open = state.withLock { state in
            guard let entry = state.entries[id] else { return false }
            return !entry.closing
        }
        guard open else { throw .notOpen }
        let rc = bytes.withUnsafeBufferPointer { buffer in
            wsb_send(handle.raw, id, buffer.baseAddress, buffer.count, binary ? 1 : 0)
        }
        guard rc == 0 else { throw .notOpen }
    }

    func close(id: Int64, code: Int, reason: String) {
        let first = state.withLock { state -> Bool in
            guard let entry = state.entries[id], !entry.closing else { return false }
            state.entries[id]?.closing = true
            return true
        }
        if first { _ = wsb_close(handle.raw, id, Int32(clamping: code), reason) }
    }

    func requestStop() {
        state.withLock { $0.stopping = true }
        wsb_stop(handle.raw)
    }

    func stopAndWait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let exited = state.withLock { state -> Bool in
                if state.exited { return true }
                state.stopping = true
                state.exitWaiters.append(continuation)
                return false
            }
            if exited { continuation.resume() } else { wsb_stop(handle.raw) }
        }
    }

    /// An event from the bridge, on the service thread. Continuations are resumed outside the lock.
    func handle(id: Int64, kind: Int32, bytes: UnsafeBufferPointer<UInt8>, code: Int32) {
        switch UInt32(kind) {
        case WSB_EVENT_OPEN.rawValue:
            let opening = state.withLock { state in
                let opening = state.entries[id]?.opening
                state.entries[id]?.opening = nil
                return opening
            }
            opening?.resume()
        case WSB_EVENT_TEXT.rawValue:
            let events = state.withLock { $0.entries[id]?.events }
            events?.yield(.text(String(decoding: bytes, as: UTF8.self)))
        case WSB_EVENT_BINARY.rawValue:
            let events = state.withLock { $0.entries[id]?.events }
            events?.yield(.binary(Array(bytes)))
        case WSB_EVENT_CLOSED.rawValue, WSB_EVENT_ERROR.rawValue:
            guard let entry = state.withLock({ $0.entries.removeValue(forKey: id) }) else { return }
            let message = String(decoding: bytes, as: UTF8.self)
            if let opening = entry.opening {
                if entry.cancelled {
                    opening.resume(throwing: CancellationError())
                } else if UInt32(kind) == WSB_EVENT_ERROR.rawValue && code == 1001 {
                    opening.resume(throwing: WebSocketError.runtimeStopped)
                } else {
                    opening.resume(throwing: WebSocketError.connectFailed(url: entry.url.description, message: message))
                }
            } else if UInt32(kind) == WSB_EVENT_CLOSED.rawValue {
                entry.events.yield(.closed(code: Int(code), reason: message))
            } else {
                entry.events.yield(.closed(code: 1006, reason: message))
            }
            entry.events.finish()
        default:
            break
        }
    }
}

private func bridgeEvent(
    _ context: UnsafeMutableRawPointer?,
    _ connection: Int64,
    _ kind: Int32,
    _ data: UnsafePointer<UInt8>?,
    _ length: Int,
    _ code: Int32
) {
    guard let context else { return }
    let loop = Unmanaged<WebSocketLoop>.fromOpaque(context).takeUnretainedValue()
    loop.handle(
        id: connection,
        kind: kind,
        bytes: UnsafeBufferPointer(start: data, count: data == nil ? 0 : length),
        code: code
    )
}

private func withOptionalCString<T>(_ string: String?, _ body: (UnsafePointer<CChar>?) -> T) -> T {
    guard let string else { return body(nil) }
    return string.withCString { body($0) }
}

// libwebsockets has one logger per process, so its destination is global too.
private let libraryLogger = Mutex(Logger(label: "inferops.websocket"))

private func installLibraryLog(_ logger: Logger) {
    libraryLogger.withLock { $0 = logger }
    // Errors and warnings only: NOTICE and below describe every connection.
    wsb_set_log(Int32(WSB_LOG_ERR | WSB_LOG_WARN), libraryLog)
}

private func libraryLog(_ level: Int32, _ line: UnsafePointer<CChar>?) {
    guard let line else { return }
    let logger = libraryLogger.withLock { $0 }
    let text = String(cString: line)
    if level & Int32(WSB_LOG_ERR) != 0 {
        logger.error("libwebsockets: \(text)")
    } else {
        logger.warning("libwebsockets: \(text)")
    }
}
