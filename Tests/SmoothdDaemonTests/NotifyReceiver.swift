#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A fake systemd: a datagram socket whose messages a background thread collects continuously (as systemd
/// does), so the daemon's non-blocking sends never find the queue full.
final class NotifyReceiver: Sendable {
    let fd: Int32
    /// The value for `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket).
    let address: String
    private let path: String?
    private let collected = Mutex<[String]>([])
    private let stopped = Mutex(false)

    init(abstract: Bool, directory: String) {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        precondition(fd >= 0)
        var name: [UInt8]
        if abstract {
            let label = "smoothd-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            address = "@" + label
            name = [0] + Array(label.utf8)
            path = nil
        } else {
            let p = directory + "/notify.sock"
            address = p
            name = Array(p.utf8)
            path = p
        }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in name.enumerated() { raw[i] = b }
        }
        let length = socklen_t(MemoryLayout.offset(of: \sockaddr_un.sun_path)! + name.count + (abstract ? 0 : 1))
        let rc = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        precondition(rc == 0, "bind failed: \(errno)")
        // A daemon running as another user (nobody) must be able to send to it, as systemd's socket allows.
        if let path { _ = chmod(path, 0o666) }
        let thread = TestThread { [self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while !stopped.withLock({ $0 }) {
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard Glibc.poll(&pfd, 1, 50) > 0 else { continue }
                while true {
                    let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                    if n <= 0 { break }
                    let message = String(decoding: buffer[0..<n], as: UTF8.self)
                    collected.withLock { $0.append(message) }
                }
            }
        }
        thread.start()
    }

    /// Stops collecting and closes the socket.
    func close() {
        stopped.withLock { $0 = true }
        usleep(100_000)
        _ = Glibc.close(fd)
        if let path { unlink(path) }
    }

    /// All messages received so far.
    @discardableResult
    func poll() -> [String] {
        collected.withLock { $0 }
    }

    /// Whether some message has a line equal to `line` (after polling).
    func received(_ line: String) -> Bool {
        poll().contains { $0.split(separator: "\n").contains { $0 == line } }
    }
}
