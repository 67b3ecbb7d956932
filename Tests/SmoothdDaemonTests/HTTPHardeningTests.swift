#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing

@testable import SmoothdDaemon
import SmoothdTesting

/// The metrics server against misbehaving clients: partial requests, too many connections, request bodies,
/// oversized heads, and clients that pipeline requests without reading the answers.
@Suite("Metrics HTTP server hardening", .serialized)
struct HTTPHardeningTests {
    /// Runs a server on 127.0.0.1 with short limits, hands its port to `body`, then shuts it down.
    func withServer(requestTimeout: Int64 = 1, maxConnections: Int = 64, _ body: (Int) async throws -> Void) async throws {
        let port = Mutex<Int?>(nil)
        var server = MetricsHTTPServer(
            address: ListenAddress(host: "127.0.0.1", port: 0),
            routes: HTTPRoutes(metrics: { Array(String(repeating: "smoothd_test_metric 1\n", count: 400).utf8) }, unhealthyReason: { nil }),
            onListening: { address in port.withLock { $0 = address.port } },
            logger: silentLogger)
        server.requestTimeout = .seconds(requestTimeout)
        server.maxConnections = maxConnections
        let group = ServiceGroup(services: [server], gracefulShutdownSignals: [], cancellationSignals: [],
                                 logger: silentLogger)
        // On a thread of its own: blocking tests elsewhere can hold every thread of the cooperative pool.
        let task = Task(executorPreference: DedicatedThreadExecutor.shared) { try await group.run() }
        // Poll without blocking a thread of the cooperative pool.
        let deadline = TestClock.seconds() + 30
        while port.withLock({ $0 }) == nil, TestClock.seconds() < deadline { try await Task.sleep(for: .milliseconds(20)) }
        do {
            try await body(try #require(port.withLock { $0 }))
        } catch {
            await group.triggerGracefulShutdown()
            _ = try? await task.value
            throw error
        }
        await group.triggerGracefulShutdown()
        try await task.value
    }

    func send(_ fd: Int32, _ text: String) -> Int {
        Array(text.utf8).withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Reads until the server closes (returns the bytes and `true`) or the receive timeout expires (`false`).
    func readUntilClosed(_ fd: Int32) -> (bytes: [UInt8], closed: Bool) {
        var all: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { all += buffer[0..<n]; continue }
            if n == 0 { return (all, true) }
            if errno == EINTR { continue }
            return (all, errno == ECONNRESET)
        }
    }

    /// A client that connects and sends part of a request head (or nothing, or a byte at a time) is closed
    /// when the request timeout expires, well before its own 10 s receive timeout.
    @Test func partialRequestsAreClosedAtTheRequestTimeout() async throws {
        try await withServer(requestTimeout: 1) { port in
            var timings: [String] = []
            for (label, prefix) in [("nothing", ""), ("half a head", "GET /metrics HTTP/1.1\r\nHost: x\r\n")] {
                let fd = try connectSocket(port)
                defer { close(fd) }
                if !prefix.isEmpty { _ = send(fd, prefix) }
                let started = TestClock.seconds()
                let (bytes, closed) = readUntilClosed(fd)
                #expect(closed, "\(label): still open after 10 s")
                #expect(bytes.isEmpty, "\(label): no answer to a partial request")
                timings.append(String(format: "%@ closed after %.2f s", label, TestClock.seconds() - started))
            }
            // Slowloris: one byte every 200 ms does not extend the deadline.
            let fd = try connectSocket(port)
            defer { close(fd) }
            let started = TestClock.seconds()
            var closed = false
            for byte in "GET /metrics HTTP/1.1\r\nHost: slow\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
                if send(fd, String(byte)) < 0 { closed = true; break }
                usleep(200_000)
                if TestClock.seconds() - started > 10 { break }
            }
            if !closed { closed = readUntilClosed(fd).closed }
            #expect(closed, "a byte-at-a-time client was never closed")
            timings.append(String(format: "slowloris closed after %.2f s", TestClock.seconds() - started))
            print("HTTP request timeout 1 s: " + timings.joined(separator: "; "))
        }
    }

    /// At most `maxConnections` connections are served at once: more are closed as soon as they are accepted,
    /// the admitted ones keep working, and once they go, new connections are served again.
    @Test func connectionCapIsEnforced() async throws {
        try await withServer(requestTimeout: 30, maxConnections: 4) { port in
            let held = try (0..<4).map { _ in try connectSocket(port) }
            usleep(200_000)
            let extra = try connectSocket(port, receiveTimeout: 5)
            let (bytes, closed) = readUntilClosed(extra)
            close(extra)
            #expect(closed && bytes.isEmpty, "the 5th connection must be closed at once")
            #expect(send(held[0], "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") > 0)
            let answer = String(decoding: readUntilClosed(held[0]).bytes, as: UTF8.self)
            #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer)")
            held.forEach { close($0) }
            #expect(eventually(timeout: 10) { (try? httpRequest(port: port, "GET", "/healthz").status) == 200 })
        }
    }

    /// Bodies are refused without being read (413), for Content-Length and for chunked requests; an oversized
    /// request head (1 MiB of headers) is refused and the connection closed.
    @Test func bodiesAndOversizedHeadsAreRefused() async throws {
        try await withServer { port in
            #expect(try httpRequest(port: port, "POST", "/metrics", body: String(repeating: "x", count: 100_000)).status == 413)
            let fd = try connectSocket(port)
            _ = send(fd, "POST /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            let chunked = String(decoding: readUntilClosed(fd).bytes, as: UTF8.self)
            close(fd)
            #expect(chunked.hasPrefix("HTTP/1.1 413"), "\(chunked)")

            let big = try connectSocket(port)
            defer { close(big) }
            _ = send(big, "GET /metrics HTTP/1.1\r\nHost: x\r\n")
            var sent = 0
            let header = "X-Junk: " + String(repeating: "j", count: 1000) + "\r\n"
            while sent < 1 << 20 {
                let n = send(big, header)
                if n <= 0 { break }
                sent += n
            }
            let (bytes, closed) = readUntilClosed(big)
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(closed)
            #expect(text.isEmpty || text.hasPrefix("HTTP/1.1 4"), "\(text.prefix(200))")
            print("oversized head: server answered \(text.split(separator: "\r\n").first ?? "nothing") and closed after \(sent >> 10) KiB sent")
            #expect(try httpRequest(port: port, "GET", "/healthz").status == 200, "the server still serves others")
        }
    }

    /// A client that pipelines thousands of requests and never reads the answers is closed once its unread
    /// answers fill the outbound buffer, instead of making the server buffer them all. Run against the real
    /// daemon, whose RSS is measured (without the cut-off it grew by about 1 GiB in 20 s).
    /// Run as the invoker and as the unit runs it (nobody, no capabilities).
    @Test(arguments: RunAs.allCases)
    func pipeliningWithoutReadingIsCutOff(runAs: RunAs) throws {
        try runAs.requireAvailable()
        let dir = TempDirectory()
        defer { dir.remove() }
        if runAs == .nobody { Unprivileged.prepare(dir) }
        let daemon = try DaemonProcess(servingIn: dir, metricsListen: "127.0.0.1:0", runAs: runAs)
        let port = try #require(daemon.metricsPort())
        let answer = try httpRequest(port: port, "GET", "/metrics").body.utf8.count
        let fd = try connectSocket(port, receiveTimeout: 2)
        defer { close(fd) }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var small: Int32 = 4096
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        let request = String(repeating: "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", count: 100)
        var requests = 0
        var cutOff = false
        let started = TestClock.seconds()
        let baseline = ProcFS.status(daemon.pid, "VmRSS") ?? 0
        var peak = baseline
        while TestClock.seconds() - started < 20 {
            peak = max(peak, ProcFS.status(daemon.pid, "VmRSS") ?? 0)
            let n = send(fd, request)
            if n < 0 {
                if errno == EPIPE || errno == ECONNRESET { cutOff = true; break }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    // The server stopped reading: see whether it closed the connection.
                    var probe: UInt8 = 0
                    if recv(fd, &probe, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) == 0 { cutOff = true; break }
                    continue
                }
                break
            }
            requests += 100
        }
        if !cutOff { cutOff = readUntilClosed(fd).closed }
        peak = max(peak, ProcFS.status(daemon.pid, "VmRSS") ?? 0)
        #expect(cutOff, "the server kept the non-reading client after \(requests) requests")
        let growth = Int64(peak) - Int64(baseline)
        print(String(format: "pipelining without reading: cut off after about %d requests sent (answers %d bytes each) in %.2f s; "
                     + "daemon RSS grew by %.1f MiB", requests, answer, TestClock.seconds() - started, Double(growth) / 1048576))
        #expect(growth < 64 << 20, "the server buffered \(growth >> 20) MiB of answers")
        #expect(try httpRequest(port: port, "GET", "/healthz").status == 200)
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit(timeout: 15))
    }

    /// Loopback is the default everywhere: the configuration, the command line's default and the shipped config.
    @Test func metricsBindLoopbackByDefault() {
        let configuration = DaemonConfiguration(spoolDirectory: "/s", outputDirectory: "/o", evaluation: .init())
        #expect(configuration.metricsListen == ListenAddress(host: "127.0.0.1", port: 9464))
        let shipped = Files.text(Binary.packageRoot + "/systemd/smoothd.conf")
        #expect(shipped.contains("metrics-listen = 127.0.0.1:9464"))
        let unit = Files.text(Binary.packageRoot + "/systemd/smoothd.service")
        #expect(unit.contains("IPAddressDeny=any") && unit.contains("IPAddressAllow=localhost"))
    }
}
