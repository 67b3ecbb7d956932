#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

@testable import SmoothdDaemon

/// Locates the built `smoothd` executable: `$SMOOTHD_BINARY`, else next to the test bundle (the build products
/// directory), else any `.build*/*/debug/smoothd` of this package.
enum Binary {
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static func smoothd() throws -> String {
        do {
            return try smoothdPath()
        } catch let error as NotFound {
            Issue.record("the smoothd executable was not found; build it first (swift build) or set SMOOTHD_BINARY. Looked at: \(error.candidates)")
            throw POSIXError(.ENOENT)
        }
    }

    struct NotFound: Error { var candidates: [String] }

    /// The executable's path; throws ``NotFound`` without recording an issue.
    static func smoothdPath() throws -> String {
        if let explicit = ProcessInfo.processInfo.environment["SMOOTHD_BINARY"], Files.exists(explicit) { return explicit }
        var candidates: [String] = []
        for start in [CommandLine.arguments.first ?? "", Bundle.main.bundlePath, Bundle.main.executablePath ?? ""] where !start.isEmpty {
            var url = URL(fileURLWithPath: start)
            for _ in 0..<4 {
                url.deleteLastPathComponent()
                candidates.append(url.appendingPathComponent("smoothd").path)
            }
        }
        for scratch in Files.list(packageRoot) where scratch.hasPrefix(".build") {
            candidates.append("\(packageRoot)/\(scratch)/debug/smoothd")
            candidates.append("\(packageRoot)/\(scratch)/x86_64-unknown-linux-gnu/debug/smoothd")
            candidates.append("\(packageRoot)/\(scratch)/aarch64-unknown-linux-gnu/debug/smoothd")
        }
        for candidate in candidates where access(candidate, X_OK) == 0 {
            var st = stat()
            if stat(candidate, &st) == 0, st.st_mode & S_IFMT == S_IFREG { return candidate }
        }
        throw NotFound(candidates: candidates)
    }
}

/// Who a test daemon runs as.
enum RunAs: Sendable, CaseIterable, CustomStringConvertible {
    /// The test's own user (root in CI).
    case invoker
    /// As the systemd unit runs it: `nobody:nogroup`, no supplementary groups, no capabilities (inheritable and
    /// bounding sets cleared), through `setpriv`. The test must make its directories usable by that user
    /// (``Unprivileged/prepare(_:)``).
    case nobody

    var description: String { self == .invoker ? "invoker" : "nobody" }

    /// Ends the current case of a test run for each user (`@Test(arguments: RunAs.allCases)`), reported as
    /// skipped with the reason, when this user cannot be run as here.
    func requireAvailable() throws {
        if self == .nobody, let reason = Unprivileged.unavailableReason { try Test.cancel(Comment(rawValue: reason)) }
    }
}

/// Running daemons as the unprivileged user, as the shipped unit does (`User=smoothd`, empty capability set).
enum Unprivileged {
    /// Why the unprivileged variants cannot run here, or `nil` when they can.
    static let unavailableReason: String? = {
        guard Privileges.isRoot else { return "needs root to start the daemon as nobody (tests run as root in CI)" }
        guard Privileges.setpriv != nil else { return "needs setpriv (util-linux) to drop to nobody without capabilities" }
        guard let binary = try? Binary.smoothdPath(), Privileges.executableByOthers(binary) else {
            return "the smoothd binary is not reachable by other users (a directory on its path is not o+x)"
        }
        return nil
    }()

    /// Whether the unprivileged variants can run.
    static var available: Bool { unavailableReason == nil }

    /// The `setpriv` arguments that drop to nobody with no groups and no capabilities.
    static var setprivArguments: [String] {
        let id = Privileges.unprivilegedID
        return ["--reuid=\(id)", "--regid=\(id)", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--"]
    }

    /// Gives `dir` and everything in it to nobody (and makes it searchable), so a daemon running as nobody can
    /// create its spool and output there.
    static func prepare(_ dir: TempDirectory) {
        let id = Privileges.unprivilegedID
        _ = chmod(dir.path, 0o755)
        _ = chown(dir.path, id, id)
        let enumerator = FileManager.default.enumerator(atPath: dir.path)
        while let name = enumerator?.nextObject() as? String {
            _ = lchown(dir.path + "/" + name, id, id)
        }
    }
}

/// A running `smoothd serve` whose standard error goes to a log file.
final class DaemonProcess {
    let process = Process()
    let logPath: String

    /// Starts `smoothd serve ARGUMENTS`, as `runAs` says (with `.nobody` through `setpriv`, as the unit runs it).
    init(_ arguments: [String], environment extra: [String: String] = [:], logPath: String, runAs: RunAs = .invoker) throws {
        self.logPath = logPath
        if runAs == .nobody {
            guard let setpriv = Privileges.setpriv else { throw POSIXError(.ENOENT) }
            process.executableURL = URL(fileURLWithPath: setpriv)
            process.arguments = Unprivileged.setprivArguments + [try Binary.smoothd(), "serve"] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: try Binary.smoothd())
            process.arguments = ["serve"] + arguments
        }
        var environment = ProcessInfo.processInfo.environment
        for key in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "LISTEN_FDS"] { environment[key] = nil }
        environment.merge(extra) { _, new in new }
        process.environment = environment
        if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        handle.seekToEndOfFile()
        process.standardError = handle
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    /// Starts `smoothd serve` on `dir`'s `spool` and `out`, with `--metrics-listen metricsListen` (no metrics server
    /// by default) and `extraArgs` after them, logging to `dir`'s `daemon.log` (appended to across restarts).
    convenience init(servingIn dir: TempDirectory, metricsListen: String = "none", extraArgs: [String] = [],
                     environment: [String: String] = [:], runAs: RunAs = .invoker) throws {
        try self.init(["--spool", dir.sub("spool"), "--output", dir.sub("out"), "--metrics-listen", metricsListen] + extraArgs,
                      environment: environment, logPath: dir.sub("daemon.log"), runAs: runAs)
    }

    var pid: Int32 { process.processIdentifier }

    func signal(_ number: Int32) { kill(pid, number) }

    /// Waits for the process to end; returns whether it did within `timeout` seconds.
    func waitForExit(timeout: Double = 20) -> Bool {
        let ended = eventually(timeout: timeout) { !process.isRunning }
        if ended { process.waitUntilExit() }
        return ended
    }

    /// The exit status (after `waitForExit`).
    var exitCode: Int32 { process.isRunning ? -1 : process.terminationStatus }
    /// Whether it was ended by a signal.
    var killedBySignal: Bool { !process.isRunning && process.terminationReason == .uncaughtSignal }

    var log: String { Files.text(logPath) }

    /// The port from the "metrics server listening" log line.
    func metricsPort(timeout: Double = 30) -> Int? {
        var port: Int?
        _ = eventually(timeout: timeout) {
            for line in log.split(separator: "\n") where line.contains("metrics server listening") {
                if let range = line.range(of: "address=") {
                    let value = line[range.upperBound...].split(separator: " ").first ?? ""
                    if let colon = value.lastIndex(of: ":") { port = Int(value[value.index(after: colon)...]) }
                }
            }
            return port != nil
        }
        return port
    }

    deinit {
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// A connected TCP socket to 127.0.0.1:`port`, with a receive timeout.
func connectSocket(_ port: Int, receiveTimeout: Int = 10) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EIO) }
    var timeout = timeval(tv_sec: receiveTimeout, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { close(fd); throw POSIXError(.ECONNREFUSED) }
    return fd
}

/// A one-shot HTTP/1.1 request to 127.0.0.1 over a plain socket.
func httpRequest(port: Int, _ method: String = "GET", _ path: String, body: String? = nil) throws -> (status: Int, headers: String, body: String) {
    let fd = try connectSocket(port)
    defer { close(fd) }
    var request = "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
    if let body { request += "Content-Length: \(body.utf8.count)\r\n\r\n\(body)" } else { request += "\r\n" }
    _ = Array(request.utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        response += buffer[0..<n]
    }
    let text = String(decoding: response, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else { throw POSIXError(.EPROTO) }
    let head = String(text[..<split.lowerBound])
    let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
    return (status, head, String(text[split.upperBound...]))
}

/// The value of an exposition line `name{labels} value` (labels written exactly as in the output), if present.
func metricValue(_ text: String, _ series: String) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
        return Double(line.dropFirst(series.count + 1).trimmingCharacters(in: .whitespaces))
    }
    return nil
}
