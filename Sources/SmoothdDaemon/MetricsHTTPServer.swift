#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The answers the HTTP server gives; called on an event loop, so they must be quick and thread-safe.
struct HTTPRoutes: Sendable {
    /// The Prometheus text for `GET /metrics`.
    var metrics: @Sendable () -> [UInt8]
    /// `nil` when healthy, else the reason `GET /healthz` reports with a 503.
    var unhealthyReason: @Sendable () -> String?
    /// The HTML report for `GET /` and the bytes of `totals.json` for `GET /totals.json`; nil until the totals are loaded.
    var live: @Sendable () -> LiveReport.Rendered? = { nil }
}

/// The metrics address cannot be bound (in use, not local, not permitted).
public struct MetricsListenError: Error, Sendable, CustomStringConvertible {
    /// The address asked for.
    public var address: ListenAddress
    /// Why, e.g. `Address already in use`.
    public var reason: String
    /// A readable message naming the address and the option.
    public var description: String {
        "cannot listen on \(address) (--metrics-listen): \(reason); choose another address with --metrics-listen "
            + "(metrics-listen in the config file), or 'none' to turn the metrics server off"
    }
}

/// A minimal HTTP/1.1 server on SwiftNIO for `GET /metrics`, `GET /healthz`, the live report `GET /` and
/// `GET /totals.json` (also `HEAD`).
///
/// Requests with a body are refused (413) without reading it; other methods get 405, other paths 404.
/// A connection idle for `idleTimeout`, or whose request head is not complete within `requestTimeout`, is closed,
/// and at most `maxConnections` are served at once (more are closed as soon as they are accepted). Request heads
/// are limited by NIO's decoder (80 KiB of header fields; more is answered 431/400 and closed), and a client that
/// does not read its answers is closed once 64 KiB of them wait in the outbound buffer, so no connection can make
/// the server hold much memory.
struct MetricsHTTPServer: Service {
    /// The address to bind.
    let address: ListenAddress
    /// The request handlers.
    let routes: HTTPRoutes
    /// Called with the bound address once listening (the port is the kernel's choice when 0 was asked).
    let onListening: @Sendable (ListenAddress) -> Void
    /// The logger.
    let logger: Logger
    /// Longest wait for a complete request head.
    var requestTimeout: TimeAmount = .seconds(10)
    /// Longest idle time on a kept-alive connection.
    var idleTimeout: TimeAmount = .seconds(30)
    /// Concurrent connections served.
    var maxConnections = 64
    /// The listening socket when ``bind()`` was called before ``run()``.
    private var listening: (any Channel)?

    /// Creates a server; it binds in ``bind()`` or at the start of ``run()``.
    init(address: ListenAddress, routes: HTTPRoutes, onListening: @escaping @Sendable (ListenAddress) -> Void, logger: Logger) {
        self.address = address
        self.routes = routes
        self.onListening = onListening
        self.logger = logger
    }

    /// Binds the listening socket now, so that a busy port fails the start before anything else happens. Call it
    /// after setting the limits.
    mutating func bind() async throws(MetricsListenError) {
        listening = try await makeChannel()
    }

    /// Closes a socket bound by ``bind()`` when the server will not run after all.
    func closeUnused() async {
        try? await listening?.close()
    }

    /// Binds, serves until graceful shutdown or cancellation, then closes the listening socket.
    func run() async throws {
        let channel: any Channel
        if let listening {
            channel = listening
        } else {
            channel = try await makeChannel()
        }
        let bound = ListenAddress(host: address.host, port: channel.localAddress?.port ?? address.port)
        logger.info("metrics server listening", metadata: ["address": "\(bound)"])
        onListening(bound)
        do {
            try await gracefulShutdown()
        } catch {
            // Cancelled: close just the same.
        }
        try? await channel.close()
    }

    private func makeChannel() async throws(MetricsListenError) -> any Channel {
        let connections = Mutex(0)
        let routes = self.routes
        let requestTimeout = self.requestTimeout
        let idleTimeout = self.idleTimeout
        let maxConnections = self.maxConnections
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // TCP_NODELAY is an IPPROTO_TCP option: given at socket level its number means SO_DEBUG, which needs
            // CAP_NET_ADMIN, so every accepted connection was closed when the daemon ran unprivileged.
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                let admitted = connections.withLock { count -> Bool in
                    guard count < maxConnections else { return false }
                    count += 1
                    return true
                }
                guard admitted else { return channel.close() }
                channel.closeFuture.whenComplete { _ in connections.withLock { $0 -= 1 } }
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(IdleStateHandler(readTimeout: idleTimeout))
                    try sync.configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: true)
                    try sync.addHandler(HTTPRouteHandler(routes: routes, requestTimeout: requestTimeout))
                }
            }
        do {
            return try await bootstrap.bind(host: address.host, port: address.port).get()
        } catch let error as IOError {
            throw MetricsListenError(address: address, reason: String(cString: strerror(error.errnoCode)))
        } catch {
            throw MetricsListenError(address: address, reason: "\(error)")
        }
    }
}

/// Answers one request at a time on a connection (the pipelining handler queues the rest).
final class HTTPRouteHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let routes: HTTPRoutes
    private let requestTimeout: TimeAmount
    private var head: HTTPRequestHead?
    private var deadline: Scheduled<Void>?

    init(routes: HTTPRoutes, requestTimeout: TimeAmount) {
        self.routes = routes
        self.requestTimeout = requestTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        armDeadline(context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
    }

    private func armDeadline(context: ChannelHandlerContext) {
        deadline?.cancel()
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: requestTimeout) {
            loopBound.value.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let request):
            deadline?.cancel()
            deadline = nil
            if request.headers.contains(name: "transfer-encoding")
                || (request.headers.first(name: "content-length").flatMap { Int($0) } ?? 0) > 0 {
                respond(context: context, request: request, status: .payloadTooLarge, body: "request bodies are not accepted\n", close: true)
                return
            }
            head = request
        case .body:
            break  // only reachable after a 413, whose connection is closing
        case .end:
            guard let request = head else { return }
            head = nil
            route(context: context, request: request)
        }
    }

    private func route(context: ChannelHandlerContext, request: HTTPRequestHead) {
        let path = request.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? request.uri
        guard request.method == .GET || request.method == .HEAD else {
            respond(context: context, request: request, status: .methodNotAllowed, body: "only GET and HEAD\n",
                    extraHeaders: [("Allow", "GET, HEAD")], close: !request.isKeepAlive)
            return
        }
        switch path {
        case "/metrics":
            respond(context: context, request: request, status: .ok, bytes: routes.metrics(),
                    contentType: "text/plain; version=0.0.4; charset=utf-8", close: !request.isKeepAlive)
        case "/healthz":
            if let reason = routes.unhealthyReason() {
                respond(context: context, request: request, status: .serviceUnavailable, body: "unhealthy: \(reason)\n", close: !request.isKeepAlive)
            } else {
                respond(context: context, request: request, status: .ok, body: "ok\n", close: !request.isKeepAlive)
            }
        case "/", "/totals.json":
            guard let live = routes.live() else {
                respond(context: context, request: request, status: .serviceUnavailable, body: "totals are not loaded yet\n", close: !request.isKeepAlive)
                return
            }
            let isPage = path == "/"
            respond(context: context, request: request, status: .ok, bytes: isPage ? live.html : live.totals,
                    contentType: isPage ? "text/html; charset=utf-8" : "application/json", close: !request.isKeepAlive)
        default:
            respond(context: context, request: request, status: .notFound, body: "not found; try /, /totals.json, /metrics or /healthz\n", close: !request.isKeepAlive)
        }
    }

    private func respond(
        context: ChannelHandlerContext, request: HTTPRequestHead, status: HTTPResponseStatus, body: String,
        extraHeaders: [(String, String)] = [], close: Bool
    ) {
        respond(context: context, request: request, status: status, bytes: Array(body.utf8),
                contentType: "text/plain; charset=utf-8", extraHeaders: extraHeaders, close: close)
    }

    private func respond(
        context: ChannelHandlerContext, request: HTTPRequestHead, status: HTTPResponseStatus, bytes: [UInt8],
        contentType: String, extraHeaders: [(String, String)] = [], close: Bool
    ) {
        var headers = HTTPHeaders([("Content-Type", contentType), ("Content-Length", String(bytes.count))] + extraHeaders)
        if close { headers.add(name: "Connection", value: "close") }
        let responseHead = HTTPResponseHead(version: request.version, status: status, headers: headers)
        context.write(wrapOutboundOut(.head(responseHead)), promise: nil)
        if request.method != .HEAD, !bytes.isEmpty {
            var buffer = context.channel.allocator.buffer(capacity: bytes.count)
            buffer.writeBytes(bytes)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if close { loopBound.value.close(promise: nil) }
        }
        if !close, !context.channel.isWritable {
            // The client sends requests faster than it reads the answers (pipelining without reading): close
            // rather than buffer responses without bound.
            context.close(promise: nil)
            return
        }
        if !close { armDeadline(context: context) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
