import CCurl
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// An HTTP client on libcurl's multi interface: one `CURLM` handle, driven by one dedicated thread.
///
/// Why not `URLSession`: on Linux it truncates timeouts to whole seconds and cannot trust a
/// per-request CA, which every real cluster's kubeconfig needs. libcurl gives millisecond timeouts,
/// CA and client-certificate blobs, and a per-host connection cap.
///
/// Threading: every libcurl call except `curl_multi_wakeup` happens on the loop thread. `send`
/// puts a command in a locked inbox and wakes the loop; the loop resumes the caller's continuation
/// when the transfer is done. Nothing blocks a Swift concurrency thread.
///
/// Call `shutdown()` when done; dropping the last reference also stops the loop, without waiting.
public final class CurlHTTPClient: HTTPClient {
    public struct Configuration: Sendable, Hashable {
        /// Connections kept to one host at once; more transfers wait in libcurl's queue.
        /// The Kubernetes API server and the test servers behave better with a small number.
        public var maxConnectionsPerHost: Int
        /// Connections in total; 0 means no limit.
        public var maxTotalConnections: Int
        /// Gives up on connecting after this long, even when the request's own timeout is longer.
        public var connectTimeout: Duration
        /// Responses larger than this fail with `CURLE_WRITE_ERROR` instead of filling memory.
        public var maxResponseBytes: Int
        public var userAgent: String

        public init(
            maxConnectionsPerHost: Int = 8,
            maxTotalConnections: Int = 0,
            connectTimeout: Duration = .seconds(10),
            maxResponseBytes: Int = 64 << 20,
            userAgent: String = "inferops"
        ) {
            self.maxConnectionsPerHost = maxConnectionsPerHost
            self.maxTotalConnections = maxTotalConnections
            self.connectTimeout = connectTimeout
            self.maxResponseBytes = maxResponseBytes
            self.userAgent = userAgent
        }
    }

    private let loop: CurlLoop

    /// Starts the loop thread.
    /// - Throws: `HTTPTransportError` when libcurl cannot be initialised or the thread cannot start.
    public init(configuration: Configuration = Configuration()) throws {
        loop = try CurlLoop(configuration: configuration)
        try loop.start()
    }

    deinit {
        loop.requestStop()
    }

    public func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        let loop = self.loop
        let id = loop.nextTransferID()
        let token = CancellationToken()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<HTTPResponse, any Error>) in
                // Submitting under the token's lock orders the start before any cancel for the same id.
                let outcome = token.phase.withLock { phase -> SubmitOutcome in
                    if phase == .cancelled { return .cancelled }
                    phase = .submitted
                    return loop.submit(.start(id, request, continuation)) ? .submitted : .shutDown
                }
                switch outcome {
                case .submitted: break
                case .cancelled: continuation.resume(throwing: CancellationError())
                case .shutDown: continuation.resume(throwing: HTTPClientShutDown())
                }
            }
        } onCancel: {
            token.phase.withLock { phase in
                if phase == .submitted { _ = loop.submit(.cancel(id)) }
                phase = .cancelled
            }
        }
    }

    /// Stops the loop: transfers still running fail with `HTTPClientShutDown`. Returns once the
    /// loop thread has released every libcurl handle. Calling it again is harmless.
    public func shutdown() async {
        await loop.stopAndWait()
    }
}

private enum SubmitOutcome { case submitted, cancelled, shutDown }

/// Per-request cancellation state, so a cancel that races the start is never lost nor leaked.
private final class CancellationToken: Sendable {
    enum Phase { case idle, submitted, cancelled }
    let phase = Mutex(Phase.idle)
}

/// A libcurl handle pointer. libcurl handles are not thread-safe; this wrapper is only sent to
/// other threads for `curl_multi_wakeup`, the one call libcurl documents as safe from anywhere.
struct CurlHandle: @unchecked Sendable {
    let raw: UnsafeMutableRawPointer
}

enum CurlCommand: Sendable {
    case start(UInt64, HTTPRequest, CheckedContinuation<HTTPResponse, any Error>)
    case cancel(UInt64)
}

/// `curl_global_init` is not thread-safe on every build and must run before any other call: once.
private let curlGlobalInitResult: Int = {
    Int(curl_global_init(Int(CURL_GLOBAL_SSL) | Int(CURL_GLOBAL_WIN32)).rawValue)
}()

/// The state shared between callers and the loop thread.
final class CurlLoop: Sendable {
    struct State {
        /// `nil` once the loop thread has cleaned up, so nobody wakes a freed handle.
        var multi: CurlHandle?
        var inbox: [CurlCommand] = []
        var stopping = false
        var exited = false
        var exitWaiters: [CheckedContinuation<Void, Never>] = []
    }

    let state: Mutex<State>
    let configuration: CurlHTTPClient.Configuration
    private let ids = Atomic<UInt64>(0)

    init(configuration: CurlHTTPClient.Configuration) throws {
        let initCode = curlGlobalInitResult
        guard initCode == 0 else {
            throw HTTPTransportError(code: initCode, message: "curl_global_init failed", request: "-")
        }
        guard let multi = curl_multi_init() else {
            throw HTTPTransportError(code: 2, message: "curl_multi_init failed", request: "-")
        }
        _ = ccurl_multi_setopt_long(multi, CURLMOPT_MAX_HOST_CONNECTIONS, configuration.maxConnectionsPerHost)
        _ = ccurl_multi_setopt_long(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, configuration.maxTotalConnections)
        self.configuration = configuration
        self.state = Mutex(State(multi: CurlHandle(raw: multi)))
    }

    func nextTransferID() -> UInt64 {
        ids.wrappingAdd(1, ordering: .relaxed).newValue
    }

    func start() throws {
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
                    Unmanaged<CurlLoop>.fromOpaque(context).takeRetainedValue().run()
                }
                return nil
            },
            context
        )
        guard rc == 0 else {
            Unmanaged<CurlLoop>.fromOpaque(context).release()
            if let multi = state.withLock({ $0.multi }) { curl_multi_cleanup(multi.raw) }
            throw HTTPTransportError(code: 2, message: "could not start the HTTP thread (errno \(rc))", request: "-")
        }
        // Nobody joins the loop thread; shutdown waits on a continuation instead.
        #if canImport(Darwin)
            if let thread { pthread_detach(thread) }
        #else
            pthread_detach(thread)
        #endif
    }

    /// Queues a command and wakes the loop. Returns `false` once the loop is stopping.
    func submit(_ command: CurlCommand) -> Bool {
        state.withLock { state in
            guard !state.stopping, let multi = state.multi else { return false }
            state.inbox.append(command)
            curl_multi_wakeup(multi.raw)
            return true
        }
    }

    func requestStop() {
        state.withLock { state in
            guard !state.stopping else { return }
            state.stopping = true
            if let multi = state.multi { curl_multi_wakeup(multi.raw) }
        }
    }

    func stopAndWait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let exited = state.withLock { state -> Bool in
                if state.exited { return true }
                state.exitWaiters.append(continuation)
                state.stopping = true
                if let multi = state.multi { curl_multi_wakeup(multi.raw) }
                return false
            }
            if exited { continuation.resume() }
        }
    }

    /// The loop thread's body: take commands, drive transfers, report finished ones, sleep in poll.
    func run() {
        guard let multi = state.withLock({ $0.multi })?.raw else { return }
        var transfers = CurlTransfers()
        while true {
            let (commands, stopping) = state.withLock { state in
                let commands = state.inbox
                state.inbox.removeAll()
                return (commands, state.stopping)
            }
            for command in commands {
                switch command {
                case .start(let id, let request, let continuation):
                    if stopping {
                        continuation.resume(throwing: HTTPClientShutDown())
                        continue
                    }
                    transfers.start(id: id, request: request, continuation: continuation, multi: multi, loop: self)
                case .cancel(let id):
                    transfers.cancel(id: id, multi: multi)
                }
            }
            if stopping {
                transfers.failAll(multi: multi)
                break
            }
            var running: Int32 = 0
            _ = curl_multi_perform(multi, &running)
            transfers.collectFinished(multi: multi)
            _ = curl_multi_poll(multi, nil, 0, 1000, nil)
        }
        let waiters = state.withLock { state in
            state.multi = nil
            state.exited = true
            let waiters = state.exitWaiters
            state.exitWaiters.removeAll()
            return waiters
        }
        curl_multi_cleanup(multi)
        for waiter in waiters { waiter.resume() }
    }
}

/// The loop thread's own bookkeeping; never leaves that thread.
struct CurlTransfers: ~Copyable {
    private var byHandle: [UnsafeMutableRawPointer: CurlTransfer] = [:]
    private var byID: [UInt64: CurlTransfer] = [:]

    mutating func start(
        id: UInt64,
        request: HTTPRequest,
        continuation: CheckedContinuation<HTTPResponse, any Error>,
        multi: UnsafeMutableRawPointer,
        loop: CurlLoop
    ) {
        let transfer: CurlTransfer
        do {
            transfer = try CurlTransfer(id: id, request: request, configuration: loop.configuration)
        } catch {
            continuation.resume(throwing: error)
            return
        }
        let added = curl_multi_add_handle(multi, transfer.easy)
        guard added == CURLM_OK else {
            let message = String(cString: curl_multi_strerror(added))
            continuation.resume(
                throwing: HTTPTransportError(code: Int(added.rawValue), message: message, request: request.description)
            )
            return
        }
        transfer.continuation = continuation
        byHandle[transfer.easy] = transfer
        byID[id] = transfer
    }

    mutating func cancel(id: UInt64, multi: UnsafeMutableRawPointer) {
        guard let transfer = byID.removeValue(forKey: id) else { return }  // already finished
        byHandle[transfer.easy] = nil
        curl_multi_remove_handle(multi, transfer.easy)
        transfer.resume(.failure(CancellationError()))
    }

    mutating func failAll(multi: UnsafeMutableRawPointer) {
        for transfer in byID.values {
            curl_multi_remove_handle(multi, transfer.easy)
            transfer.resume(.failure(HTTPClientShutDown()))
        }
        byID.removeAll()
        byHandle.removeAll()
    }

    mutating func collectFinished(multi: UnsafeMutableRawPointer) {
        var remaining: Int32 = 0
        while let message = curl_multi_info_read(multi, &remaining) {
            guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle else { continue }
            // The message is invalid after curl_multi_remove_handle: read it first.
            let code = message.pointee.data.result
            guard let transfer = byHandle.removeValue(forKey: easy) else { continue }
            byID[transfer.id] = nil
            curl_multi_remove_handle(multi, easy)
            transfer.resume(transfer.outcome(code))
        }
    }
}

/// One request in flight: its easy handle, header list, error buffer and the bytes received.
/// Confined to the loop thread; libcurl's callbacks reach it through an unretained pointer while
/// `CurlTransfers` keeps it alive.
final class CurlTransfer {
    let id: UInt64
    let easy: UnsafeMutableRawPointer
    let requestDescription: String
    let maxResponseBytes: Int
    var continuation: CheckedContinuation<HTTPResponse, any Error>?
    var headerList: UnsafeMutablePointer<curl_slist>?
    let errorBuffer: UnsafeMutablePointer<CChar>
    var body: [UInt8] = []
    var headers = HTTPHeaders()
    var tooLarge = false

    init(id: UInt64, request: HTTPRequest, configuration: CurlHTTPClient.Configuration) throws {
        guard let easy = curl_easy_init() else {
            throw HTTPTransportError(code: 2, message: "curl_easy_init failed", request: request.description)
        }
        self.id = id
        self.easy = easy
        self.requestDescription = request.description
        self.maxResponseBytes = configuration.maxResponseBytes
        errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE))
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE))
        try configure(request, configuration)
    }

    deinit {
        curl_easy_cleanup(easy)
        if let headerList { curl_slist_free_all(headerList) }
        errorBuffer.deallocate()
    }

    private func check(_ code: CURLcode, _ what: String) throws {
        guard code == CURLE_OK else {
            let text = String(cString: curl_easy_strerror(code))
            throw HTTPTransportError(code: Int(code.rawValue), message: "\(what): \(text)", request: requestDescription)
        }
    }

    private func setBlob(_ option: CURLoption, _ bytes: [UInt8]) -> CURLcode {
        var copy = bytes
        return copy.withUnsafeMutableBytes { buffer in
            // CURL_BLOB_COPY: libcurl keeps its own copy, so the key material need not outlive this call.
            var blob = curl_blob(data: buffer.baseAddress, len: buffer.count, flags: UInt32(CURL_BLOB_COPY))
            return withUnsafePointer(to: &blob) { ccurl_setopt_ptr(easy, option, $0) }
        }
    }

    private func setMaterial(_ material: TLSMaterial, file: CURLoption, blob: CURLoption, _ what: String) throws {
        switch material {
        case .file(let path): try check(ccurl_setopt_str(easy, file, path), what)
        case .pem(let bytes): try check(setBlob(blob, bytes), what)
        }
    }

    private func configure(_ request: HTTPRequest, _ configuration: CurlHTTPClient.Configuration) throws {
        let context = Unmanaged.passUnretained(self).toOpaque()
        try check(ccurl_setopt_str(easy, CURLOPT_URL, request.url), "URL")
        // Signals would interrupt other threads' work; timeouts use the threaded resolver instead.
        try check(ccurl_setopt_long(easy, CURLOPT_NOSIGNAL, 1), "NOSIGNAL")
        try check(ccurl_setopt_str(easy, CURLOPT_PROTOCOLS_STR, "http,https"), "protocols")
        try check(ccurl_setopt_ptr(easy, CURLOPT_ERRORBUFFER, errorBuffer), "error buffer")
        try check(ccurl_setopt_datacb(easy, CURLOPT_WRITEFUNCTION, curlReceiveBody), "write callback")
        try check(ccurl_setopt_ptr(easy, CURLOPT_WRITEDATA, context), "write data")
        try check(ccurl_setopt_datacb(easy, CURLOPT_HEADERFUNCTION, curlReceiveHeader), "header callback")
        try check(ccurl_setopt_ptr(easy, CURLOPT_HEADERDATA, context), "header data")
        try check(ccurl_setopt_str(easy, CURLOPT_USERAGENT, configuration.userAgent), "user agent")
        try check(
            ccurl_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, milliseconds(configuration.connectTimeout)),
            "connect timeout"
        )
        if let timeout = request.timeout {
            try check(ccurl_setopt_long(easy, CURLOPT_TIMEOUT_MS, milliseconds(timeout)), "timeout")
        }

        switch request.method {
        case .get: try check(ccurl_setopt_long(easy, CURLOPT_HTTPGET, 1), "GET")
        case .head: try check(ccurl_setopt_long(easy, CURLOPT_NOBODY, 1), "HEAD")
        case .post: try check(ccurl_setopt_long(easy, CURLOPT_POST, 1), "POST")
        case .put, .patch, .delete:
            try check(ccurl_setopt_str(easy, CURLOPT_CUSTOMREQUEST, request.method.rawValue), "method")
        }
        if request.method == .post || request.body != nil {
            let body = request.body ?? []
            try check(ccurl_setopt_off(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.count)), "body size")
            // COPYPOSTFIELDS: libcurl copies the body, so the Swift array may go away now.
            try body.withUnsafeBytes { buffer in
                let empty: [UInt8] = [0]
                if let base = buffer.baseAddress, buffer.count > 0 {
                    try check(ccurl_setopt_ptr(easy, CURLOPT_COPYPOSTFIELDS, base), "body")
                } else {
                    try empty.withUnsafeBytes {
                        try check(ccurl_setopt_ptr(easy, CURLOPT_COPYPOSTFIELDS, $0.baseAddress), "body")
                    }
                }
            }
        }

        var list: UnsafeMutablePointer<curl_slist>?
        for field in request.headers {
            // "Name;" is libcurl's way to send a header with an empty value.
            let line = field.value.isEmpty ? "\(field.name);" : "\(field.name): \(field.value)"
            list = curl_slist_append(list, line)
        }
        // libcurl would otherwise send `Expect: 100-continue` for large bodies and wait for an answer.
        list = curl_slist_append(list, "Expect:")
        headerList = list
        try check(ccurl_setopt_ptr(easy, CURLOPT_HTTPHEADER, list), "headers")

        if let tls = request.tls {
            if let authority = tls.certificateAuthority {
                try setMaterial(authority, file: CURLOPT_CAINFO, blob: CURLOPT_CAINFO_BLOB, "certificate authority")
            }
            if let certificate = tls.clientCertificate {
                try setMaterial(certificate, file: CURLOPT_SSLCERT, blob: CURLOPT_SSLCERT_BLOB, "client certificate")
                try check(ccurl_setopt_str(easy, CURLOPT_SSLCERTTYPE, "PEM"), "client certificate type")
            }
            if let key = tls.clientKey {
                try setMaterial(key, file: CURLOPT_SSLKEY, blob: CURLOPT_SSLKEY_BLOB, "client key")
                try check(ccurl_setopt_str(easy, CURLOPT_SSLKEYTYPE, "PEM"), "client key type")
            }
            if tls.insecureSkipVerify {
                try check(ccurl_setopt_long(easy, CURLOPT_SSL_VERIFYPEER, 0), "verify peer")
                try check(ccurl_setopt_long(easy, CURLOPT_SSL_VERIFYHOST, 0), "verify host")
            }
        }
    }

    /// The response, or the transport error, for a finished transfer.
    func outcome(_ code: CURLcode) -> Result<HTTPResponse, any Error> {
        guard code == CURLE_OK else {
            var message = String(cString: errorBuffer)
            if message.isEmpty { message = String(cString: curl_easy_strerror(code)) }
            if tooLarge { message = "response larger than \(maxResponseBytes) bytes" }
            return .failure(HTTPTransportError(code: Int(code.rawValue), message: message, request: requestDescription))
        }
        var status = 0
        _ = ccurl_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
        return .success(HTTPResponse(status: status, headers: headers, body: body))
    }

    func resume(_ result: Result<HTTPResponse, any Error>) {
        continuation?.resume(with: result)
        continuation = nil
    }

    func receive(body bytes: UnsafeRawBufferPointer) -> Bool {
        guard body.count + bytes.count <= maxResponseBytes else {
            tooLarge = true
            return false
        }
        body.append(contentsOf: bytes)
        return true
    }

    func receive(headerLine bytes: UnsafeRawBufferPointer) {
        let line = String(decoding: bytes, as: UTF8.self)
        if line.hasPrefix("HTTP/") {
            // A new status line: an interim 100 response or a proxy's CONNECT reply came first.
            headers = HTTPHeaders()
            return
        }
        guard let colon = line.firstIndex(of: ":") else { return }
        let name = line[..<colon].trimmingWhitespace()
        let value = line[line.index(after: colon)...].trimmingWhitespace()
        if !name.isEmpty { headers.add(name, value) }
    }
}

private func milliseconds(_ duration: Duration) -> Int {
    let (seconds, attoseconds) = duration.components
    let total = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
    return Int(clamping: max(1, total))
}

private func curlReceiveBody(
    _ data: UnsafeMutablePointer<CChar>?,
    _ size: Int,
    _ count: Int,
    _ context: UnsafeMutableRawPointer?
) -> Int {
    guard let context else { return 0 }
    let transfer = Unmanaged<CurlTransfer>.fromOpaque(context).takeUnretainedValue()
    let length = size * count
    return transfer.receive(body: UnsafeRawBufferPointer(start: data, count: length)) ? length : 0
}

private func curlReceiveHeader(
    _ data: UnsafeMutablePointer<CChar>?,
    _ size: Int,
    _ count: Int,
    _ context: UnsafeMutableRawPointer?
) -> Int {
    guard let context else { return 0 }
    let transfer = Unmanaged<CurlTransfer>.fromOpaque(context).takeUnretainedValue()
    let length = size * count
    transfer.receive(headerLine: UnsafeRawBufferPointer(start: data, count: length))
    return length
}

extension Substring {
    fileprivate func trimmingWhitespace() -> String {
        var slice = self[...]
        while let first = slice.first, first.isWhitespace { slice = slice.dropFirst() }
        while let last = slice.last, last.isWhitespace { slice = slice.dropLast() }
        return String(slice)
    }
}
