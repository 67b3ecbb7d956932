#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Logging

/// A swift-log handler writing one line per event to standard error.
///
/// Under journald (`$JOURNAL_STREAM` names standard error) each line starts with the syslog priority prefix
/// (`<3>` error … `<7>` debug) instead of a timestamp, since the journal adds its own. Otherwise lines read
/// `2026-01-02T03:04:05.678Z info message key=value`. Metadata is sorted by key.
public struct JournalLogHandler: LogHandler {
    /// Whether to write priority prefixes instead of timestamps.
    public let journald: Bool
    /// The handler's minimum level.
    public var logLevel: Logger.Level
    /// Metadata attached to every line from this handler.
    public var metadata: Logger.Metadata = [:]
    private let write: @Sendable (String) -> Void

    /// Creates a handler; `write` receives complete lines (tests capture them, the daemon writes to fd 2).
    public init(journald: Bool, logLevel: Logger.Level = .info, write: @escaping @Sendable (String) -> Void = JournalLogHandler.writeToStandardError) {
        self.journald = journald
        self.logLevel = logLevel
        self.write = write
    }

    /// Whether `environment`'s `JOURNAL_STREAM` (`DEVICE:INODE`) is standard error of this process.
    public static func isJournalStream(environment: [String: String]) -> Bool {
        guard let value = environment["JOURNAL_STREAM"] else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var st = stat()
        guard fstat(2, &st) == 0 else { return false }
        return UInt64(st.st_dev) == device && UInt64(st.st_ino) == inode
    }

    /// Metadata lookup by key.
    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// The syslog priority of a level.
    public static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    /// Formats and writes one event.
    public func log(event: LogEvent) {
        write(format(level: event.level, message: event.message, metadata: event.metadata))
    }

    /// The line written for an event (without the trailing newline).
    public func format(level: Logger.Level, message: Logger.Message, metadata extra: Logger.Metadata?) -> String {
        var merged = metadata
        if let extra { merged.merge(extra) { _, new in new } }
        var line = journald
            ? "<\(JournalLogHandler.priority(level))>"
            : "\(WallClock.iso8601(WallClock.now())) \(level) "
        line += message.description.replacingNewlines()
        for key in merged.keys.sorted() {
            line += " \(key)=" + JournalLogHandler.render(merged[key]!)
        }
        return line
    }

    private static func render(_ value: Logger.Metadata.Value) -> String {
        let text = value.description.replacingNewlines()
        guard text.isEmpty || text.contains(" ") || text.contains("\"") else { return text }
        var quoted = "\""
        for character in text {
            if character == "\"" || character == "\\" { quoted.append("\\") }
            quoted.append(character)
        }
        return quoted + "\""
    }

    /// Writes `line` and a newline to file descriptor 2 in one `write` call.
    public static let writeToStandardError: @Sendable (String) -> Void = { line in
        var bytes = Array(line.utf8)
        bytes.append(UInt8(ascii: "\n"))
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = Glibc.write(2, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0 { if errno == EINTR { continue }; return }
                offset += n
            }
        }
    }
}

extension String {
    /// The text on one line and free of terminal control sequences: CR and LF become spaces, every other
    /// control character (C0, DEL, C1, e.g. ESC) is written `\u{1B}`, so no value can forge a log line or
    /// reach a terminal reading the log as a control sequence.
    func replacingNewlines() -> String {
        guard unicodeScalars.contains(where: { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }) else { return self }
        var out = String.UnicodeScalarView()
        for scalar in unicodeScalars {
            if scalar == "\n" || scalar == "\r" {
                out.append(" ")
            } else if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) {
                out.append(contentsOf: "\\u{\(String(scalar.value, radix: 16, uppercase: true))}".unicodeScalars)
            } else {
                out.append(scalar)
            }
        }
        return String(out)
    }
}
