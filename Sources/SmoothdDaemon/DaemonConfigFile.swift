#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A problem in a `--config` file, with the line it was found on (0 when the file could not be read).
public struct ConfigFileError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The config file's path.
    public var path: String
    /// The 1-based line number, or 0 for the whole file.
    public var line: Int
    /// What is wrong.
    public var message: String

    /// `path:line: message`.
    public var description: String { line > 0 ? "\(path):\(line): \(message)" : "\(path): \(message)" }
}

/// The `--config` file: one `key = value` per line, where `key` is a `serve` option's long name without the
/// leading dashes (`spool`, `metrics-listen`, `smoothing`, …). Lines end at `\n`; a `\r` before it (a file saved
/// with CRLF line ends) is dropped. Blank lines and lines starting with `#` are ignored; a value may be wrapped in
/// double quotes. The file must be UTF-8 without a byte order mark. Flags take `true`/`false` (also `yes`/`no`, `on`/`off`, `1`/`0`).
/// Options given on the command line win over the file; the file wins over built-in defaults.
public struct DaemonConfigFile: Sendable, Equatable {
    /// One `key = value` line.
    public struct Entry: Sendable, Equatable {
        /// The option name, e.g. `metrics-listen`.
        public var key: String
        /// The value text, unquoted and trimmed.
        public var value: String
        /// The 1-based line it came from.
        public var line: Int
    }

    /// The file's path (for messages).
    public var path: String
    /// The entries, in file order.
    public var entries: [Entry]

    /// Parses config text; `path` only labels errors.
    public static func parse(_ text: String, path: String) throws(ConfigFileError) -> DaemonConfigFile {
        try parse(bytes: Array(text.utf8), path: path)
    }

    /// Parses the bytes of a config file; `path` only labels errors.
    ///
    /// Lines are split on `\n` bytes, not on Swift `Character`s (for which `"\r\n"` is one character, so a CRLF
    /// file would be a single line), and a trailing `\r` is dropped.
    public static func parse(bytes: [UInt8], path: String) throws(ConfigFileError) -> DaemonConfigFile {
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) {
            throw ConfigFileError(path: path, line: 1, message: "the file starts with a UTF-8 byte order mark (bytes EF BB BF); save it as UTF-8 without a BOM")
        }
        if bytes.starts(with: [0xFF, 0xFE]) || bytes.starts(with: [0xFE, 0xFF]) {
            throw ConfigFileError(path: path, line: 1, message: "the file is UTF-16 (it starts with a byte order mark); save it as UTF-8")
        }
        var entries: [Entry] = []
        var seen: Set<String> = []
        var lineNumber = 0
        for var rawBytes in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            if rawBytes.last == UInt8(ascii: "\r") { rawBytes = rawBytes.dropLast() }
            guard let rawLine = String(validating: rawBytes, as: UTF8.self) else {
                throw ConfigFileError(path: path, line: lineNumber, message: "not valid UTF-8")
            }
            let line = rawLine.trimmingWhitespace()
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let equals = line.firstIndex(of: "=") else {
                throw ConfigFileError(path: path, line: lineNumber, message: "expected 'key = value'")
            }
            let key = line[..<equals].trimmingWhitespace()
            var value = line[line.index(after: equals)...].trimmingWhitespace()
            guard !key.isEmpty, key.allSatisfy({ ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "-" }),
                  !key.hasPrefix("-")
            else {
                throw ConfigFileError(path: path, line: lineNumber, message: "invalid key '\(key)' (use an option's long name, e.g. metrics-listen)")
            }
            if key == "config" {
                throw ConfigFileError(path: path, line: lineNumber, message: "'config' cannot be set inside a config file")
            }
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
                value = String(value.dropFirst().dropLast())
            }
            guard seen.insert(key).inserted else {
                throw ConfigFileError(path: path, line: lineNumber, message: "'\(key)' is set twice")
            }
            entries.append(Entry(key: key, value: value, line: lineNumber))
        }
        return DaemonConfigFile(path: path, entries: entries)
    }

    /// Reads and parses the file at `path`. Unlike the spool and output layer, this follows symlinks (the config
    /// is the administrator's, and /etc/alternatives, NixOS and Kubernetes ConfigMaps install it as a symlink); it
    /// must end at a regular file of at most 1 MiB.
    public static func load(path: String) throws(ConfigFileError) -> DaemonConfigFile {
        let bytes: [UInt8]
        do {
            bytes = try readRegularFile(path: path, limit: 1 << 20)
        } catch {
            throw ConfigFileError(path: path, line: 0, message: "cannot read: \(error)")
        }
        return try parse(bytes: bytes, path: path)
    }

    /// The bytes of the regular file at `path`, following symlinks; never blocks on a FIFO.
    static func readRegularFile(path: String, limit: Int) throws(FileSystemError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { throw FileSystemError.current("open", path) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileSystemError.current("stat", path) }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw FileSystemError(operation: "open (not a regular file)", path: path, errorNumber: EINVAL)
        }
        return try readAll(fd, limit: limit, path: path)
    }

    /// The command-line arguments equivalent to this file (`--key=value`, or `--key` / `--no-key` for flags), leaving
    /// out every key that `commandLine` already sets, so that putting the result before `commandLine` lets flags win.
    ///
    /// - Parameters:
    ///   - flagKeys: options that are flags (take no value); `true` gives `--key`, `false` gives `--no-key`.
    ///   - commandLine: the arguments given to `serve` on the command line.
    public func arguments(flagKeys: Set<String>, overriddenBy commandLine: [String]) throws(ConfigFileError) -> [String] {
        let given = DaemonConfigFile.optionNames(in: commandLine)
        var result: [String] = []
        for entry in entries {
            if given.contains(entry.key) || given.contains("no-" + entry.key) { continue }
            if flagKeys.contains(entry.key) {
                switch entry.value.lowercased() {
                case "true", "yes", "on", "1": result.append("--" + entry.key)
                case "false", "no", "off", "0": result.append("--no-" + entry.key)
                default:
                    throw ConfigFileError(path: path, line: entry.line, message: "'\(entry.key)' takes true or false, not '\(entry.value)'")
                }
            } else {
                result.append("--" + entry.key + "=" + entry.value)
            }
        }
        return result
    }

    /// The long option names (without dashes) present in `arguments`, up to a `--` terminator.
    static func optionNames(in arguments: [String]) -> Set<String> {
        var names: Set<String> = []
        for argument in arguments {
            if argument == "--" { break }
            guard argument.hasPrefix("--") else { continue }
            let body = argument.dropFirst(2)
            let name = body.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).first ?? body
            names.insert(String(name))
        }
        return names
    }
}

func parentDirectory(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
}

func lastComponent(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return path }
    return String(path[path.index(after: slash)...])
}

extension StringProtocol {
    /// The text without leading and trailing whitespace.
    func trimmingWhitespace() -> String {
        let scalars = Array(unicodeScalars)
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars[first...last])
        return String(view)
    }
}
