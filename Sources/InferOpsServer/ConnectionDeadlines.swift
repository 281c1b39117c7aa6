import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes

/// HTTP/1.1 with two deadlines on every connection, so a client cannot hold one open for free.
///
/// Hummingbird's own `idleTimeout` counts from the last *decoded* request part, so a client that
/// sends a request head one byte at a time, or a body a few bytes at a time, keeps its connection
/// as long as it likes; enough such clients use up the process's file descriptors and the listener
/// stops answering probes. Here a connection is always in one of three modes:
/// - reading a request (bytes arrived, its end has not): it must arrive whole within `readTimeout`
///   of its first byte, however steadily the bytes trickle;
/// - waiting for the server's answer: no deadline, the handler's own limits apply;
/// - idle between requests: it is closed after `idleTimeout`.
///
/// The deadlines need both sides of the HTTP decoder: raw bytes show when a request starts (a head
/// that never completes produces no request part at all), request parts show when it ends.
struct DeadlineHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value

    let http1: HTTP1Channel
    let idleTimeout: Duration
    let readTimeout: Duration

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let idleTimeout = TimeAmount(idleTimeout)
        let readTimeout = TimeAmount(readTimeout)
        return http1.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let deadlines = ConnectionDeadlines(channel: channel, idleTimeout: idleTimeout, readTimeout: readTimeout)
            let pipeline = channel.pipeline.syncOperations
            try pipeline.addHandler(RequestBytesWatcher(deadlines: deadlines), position: .first)
            // After the HTTP codecs, before Hummingbird's connection state and the async channel.
            let state = try pipeline.handler(type: HTTPConnectionStateHandler.self)
            try pipeline.addHandler(RequestPartsWatcher(deadlines: deadlines), position: .before(state))
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await http1.handle(value: value, logger: logger)
    }
}

/// The deadline state of one connection. Lives on the connection's event loop, like its handlers.
final class ConnectionDeadlines {
    private enum Mode {
        case reading
        case answering
        case idle
    }

    private let channel: any Channel
    private let idleTimeout: TimeAmount
    private let readTimeout: TimeAmount
    /// Bytes arrived since the last request ended: a request is on its way.
    private var readingRequest = false
    /// Request heads seen minus responses finished: answers the server still owes.
    private var owedAnswers = 0
    private var mode: Mode?
    private var timer: Scheduled<Void>?

    init(channel: any Channel, idleTimeout: TimeAmount, readTimeout: TimeAmount) {
        self.channel = channel
        self.idleTimeout = idleTimeout
        self.readTimeout = readTimeout
    }

    func bytesArrived() {
        readingRequest = true
        update()
    }

    func requestStarted() {
        owedAnswers += 1
        update()
    }

    func requestEnded() {
        readingRequest = false
        update()
    }

    func responseEnded() {
        owedAnswers = max(0, owedAnswers - 1)
        update()
    }

    func stop() {
        timer?.cancel()
        timer = nil
        mode = nil
    }

    /// Starts a deadline when the mode changes, and only then: more bytes of the same request do
    /// not extend its read deadline.
    func update() {
        guard channel.isActive else { return stop() }
        let next: Mode = readingRequest ? .reading : owedAnswers > 0 ? .answering : .idle
        guard next != mode else { return }
        timer?.cancel()
        timer = nil
        mode = next
        let delay: TimeAmount
        switch next {
        case .reading: delay = readTimeout
        case .idle: delay = idleTimeout
        case .answering: return
        }
        let channel = self.channel
        timer = channel.eventLoop.assumeIsolated().scheduleTask(in: delay) {
            channel.close(promise: nil)
        }
    }
}

/// Sees raw bytes before the HTTP decoder: the first byte of a request starts its read deadline.
final class RequestBytesWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let deadlines: ConnectionDeadlines

    init(deadlines: ConnectionDeadlines) {
        self.deadlines = deadlines
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { deadlines.update() }
    }

    func channelActive(context: ChannelHandlerContext) {
        deadlines.update()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadlines.stop()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadlines.stop()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if unwrapInboundIn(data).readableBytes > 0 { deadlines.bytesArrived() }
        context.fireChannelRead(data)
    }
}

/// Sees decoded request and response parts: a request's end stops its read deadline, a response's
/// end starts the idle one.
final class RequestPartsWatcher: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let deadlines: ConnectionDeadlines

    init(deadlines: ConnectionDeadlines) {
        self.deadlines = deadlines
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: deadlines.requestStarted()
        case .body: break
        case .end: deadlines.requestEnded()
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { deadlines.responseEnded() }
        context.write(data, promise: promise)
    }
}
