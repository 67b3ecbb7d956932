#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The `sd_notify(3)` protocol, without libsystemd: datagrams such as `READY=1` sent to the `AF_UNIX` socket named
/// by `$NOTIFY_SOCKET` (a filesystem path, or an abstract socket written with a leading `@`).
/// When the variable is unset (not started by systemd with `Type=notify`) every call does nothing.
public struct SystemdNotifier: Sendable {
    /// The socket address bytes (`sun_path` content) and whether it is abstract; `nil` when notifications are off.
    let socketPath: [UInt8]?
    /// The watchdog interval systemd asks for (`WATCHDOG_USEC`), when it is meant for this process (`WATCHDOG_PID`).
    public let watchdogInterval: Duration?

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from `environment`.
    public init(environment: [String: String]) {
        if let value = environment["NOTIFY_SOCKET"], !value.isEmpty, value.hasPrefix("/") || value.hasPrefix("@") {
            var bytes = Array(value.utf8)
            if bytes[0] == UInt8(ascii: "@") { bytes[0] = 0 }
            socketPath = bytes.count < 108 ? bytes : nil
        } else {
            socketPath = nil
        }
        var interval: Duration?
        if let usecText = environment["WATCHDOG_USEC"], let usec = Int64(usecText), usec > 0 {
            let pidMatches = environment["WATCHDOG_PID"].map { Int32($0) == getpid() } ?? true
            if pidMatches { interval = .microseconds(usec) }
        }
        watchdogInterval = interval
    }

    /// Reads the current process environment.
    public static func fromProcessEnvironment() -> SystemdNotifier {
        SystemdNotifier(environment: processEnvironment())
    }

    /// Whether `NOTIFY_SOCKET` was set (and usable).
    public var isEnabled: Bool { socketPath != nil }

    /// Sends one notification, e.g. `"READY=1\nSTATUS=watching"`. Returns whether it was sent. Never blocks
    /// (`MSG_DONTWAIT`): when the receiver's queue is full the message is dropped rather than stalling the caller.
    @discardableResult
    public func notify(_ message: String) -> Bool {
        guard let path = socketPath else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.enumerated() { raw[i] = byte }
        }
        let pathOffset = MemoryLayout.offset(of: \sockaddr_un.sun_path)!
        // A path socket's length counts its terminating NUL; an abstract name is exactly its bytes.
        let length = socklen_t(pathOffset + path.count + (path.first == 0 ? 0 : 1))
        let payload = Array(message.utf8)
        let sent = payload.withUnsafeBytes { buffer in
            withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT), $0, length)
                }
            }
        }
        return sent == payload.count
    }

    /// `READY=1` with a status line.
    @discardableResult
    public func ready(status: String) -> Bool { notify("READY=1\nSTATUS=\(status)") }

    /// `WATCHDOG=1`.
    @discardableResult
    public func watchdog() -> Bool { notify("WATCHDOG=1") }

    /// `STATUS=…`: a one-line status that `systemctl status` shows.
    @discardableResult
    public func status(_ text: String) -> Bool { notify("STATUS=\(text)") }

    /// `STOPPING=1` with a status line.
    @discardableResult
    public func stopping(status: String) -> Bool { notify("STOPPING=1\nSTATUS=\(status)") }
}

/// The process environment as a dictionary.
public func processEnvironment() -> [String: String] {
    var result: [String: String] = [:]
    var pointer = environ
    while let entry = pointer.pointee {
        let text = String(cString: entry)
        if let equals = text.firstIndex(of: "=") {
            result[String(text[..<equals])] = String(text[text.index(after: equals)...])
        }
        pointer += 1
    }
    return result
}
