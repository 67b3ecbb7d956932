/// The producer protocol's rule for which spool entries are finished shards, and how a spool entry's name
/// becomes the name its records are written under.
///
/// **Names the daemon handles as text ("keys").** A directory entry whose name is valid UTF-8 without control
/// characters is handled under that name. Any other name — one holding a control character (U+0000–U+001F,
/// U+007F, U+0080–U+009F, e.g. a newline or an escape), or bytes that are not valid UTF-8 — cannot be written
/// safely into file names, logs and JSON as it is, so it is handled under an escaped *key*: `/` followed by the
/// name with every such byte, and every `%`, written `%XX` (two upper-case hex digits). A real entry name never
/// contains `/`, so keys and plain names never collide, and the key decodes back to the exact bytes (the daemon
/// still renames the entry by its real bytes). The *display name* of a key is the key without its `/`: it is the
/// name the shard is recorded under (`OUTPUT/DISPLAY.summary.json`, `SPOOL/done/DISPLAY`, `"shard": DISPLAY`).
/// For example the entry `a<LF>b.lshd.zst` is recorded as `a%0Ab.lshd.zst`, and `x<0xFF>.lshd.zst` as
/// `x%FF.lshd.zst`. Should a producer later use such a display name literally, it counts as a reused name
/// (recorded as `NAME~2`).
public enum ShardName {
    /// The longest accepted shard name, in UTF-8 bytes of its display name: 221. The longest name derived from it
    /// is the temporary file of its summary, `.smoothd-` + INSTANCE + `.summary.json` + `.tmp` (26 bytes more),
    /// where INSTANCE adds `~N` for a reused name (8 bytes for N up to ``maximumOrdinal``): 221 + 8 + 26 = 255,
    /// Linux's NAME_MAX. (`done/INSTANCE.dupN` and `.error.json` names are shorter.)
    public static let maximumLength = 255 - ".smoothd-".utf8.count - ".summary.json".utf8.count - ".tmp".utf8.count - "~9999999".utf8.count

    /// The most shards recorded under one name (`NAME~9999999`), which keeps derived names within NAME_MAX.
    public static let maximumOrdinal = 9_999_999

    /// Whether `name` (a plain name or a key) is a final shard name: its display name ends in `.zst`, does not
    /// start with `.`, does not end in `.tmp` or `.part` (which `*.zst` already excludes), holds no `/` or NUL,
    /// and is at most ``maximumLength`` bytes. The caller must still check that the entry is a regular file.
    public static func isFinal(_ name: String) -> Bool {
        isShardShaped(name) && display(name).utf8.count <= maximumLength
    }

    /// Whether `name` would be a final shard name but for its length: such a shard is quarantined under
    /// ``shortened(_:)`` (see `SpoolStore.quarantineOverlong`).
    public static func isOverlong(_ name: String) -> Bool {
        isShardShaped(name) && display(name).utf8.count > maximumLength
    }

    /// Whether `name` is a producer's unfinished name: its display name starts with `.` or ends in `.tmp` or
    /// `.part` (the temporary names of the producer protocol).
    public static func isUnfinished(_ name: String) -> Bool {
        let shown = display(name)
        return shown.utf8.first == UInt8(ascii: ".") || shown.hasSuffix(".tmp") || shown.hasSuffix(".part")
    }

    /// The rules of ``isFinal(_:)`` except the length limit.
    static func isShardShaped(_ name: String) -> Bool {
        // Byte-wise: a leading "." followed by a combining mark still counts as a leading ".".
        let bytes = Array(display(name).utf8)
        guard !bytes.isEmpty, bytes.first != UInt8(ascii: ".") else { return false }
        func endsWith(_ suffix: String) -> Bool { bytes.count >= suffix.utf8.count && bytes.suffix(suffix.utf8.count).elementsEqual(suffix.utf8) }
        guard endsWith(".zst"), !endsWith(".tmp"), !endsWith(".part") else { return false }
        return !bytes.contains(UInt8(ascii: "/")) && !bytes.contains(0)
    }

    /// The bytes of the display name kept at the start of a ``shortened(_:)`` name.
    static let shortenedPrefixBytes = 160
    /// The end of every ``shortened(_:)`` name; it does not end in `.zst`, so no producer's name can be one.
    static let shortenedSuffix = ".name-too-long"

    /// The plain name an overlong shard is recorded under: the first 160 bytes of its display name (cut before a
    /// character or `%XX` escape that would not fit), `-`, 16 hex digits of the FNV-1a hash of the entry's exact
    /// bytes, and `.name-too-long` (at most 191 bytes; deterministic, so a restart finds the same name).
    public static func shortened(_ name: String) -> String {
        let shown = display(name)
        var prefix = ""
        var used = 0
        var scalars = Array(shown.unicodeScalars)[...]
        while let scalar = scalars.first {
            // Keep an escape whole: `%XX` is three bytes that stand for one.
            let width = scalar == "%" && isKey(name) ? 3 : UTF8.width(scalar)
            guard used + width <= shortenedPrefixBytes else { break }
            for _ in 0..<(scalar == "%" && isKey(name) ? 3 : 1) {
                if let next = scalars.popFirst() { prefix.unicodeScalars.append(next) }
            }
            used += width
        }
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in entryBytes(name) { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        let hex = String(hash, radix: 16)
        return prefix + "-" + String(repeating: "0", count: 16 - hex.count) + hex + shortenedSuffix
    }

    /// Whether `name` is an escaped key (see the type's documentation) rather than a plain name.
    public static func isKey(_ name: String) -> Bool { name.utf8.first == UInt8(ascii: "/") }

    /// The name the daemon handles for a directory entry called `bytes` (without a terminating NUL): the name
    /// itself when it is valid UTF-8 without control characters, else its escaped key.
    public static func key<Bytes: Collection>(forEntryBytes bytes: Bytes) -> String where Bytes.Element == UInt8 {
        if let text = String(validating: bytes, as: UTF8.self), !text.unicodeScalars.contains(where: isControl) {
            return text
        }
        return "/" + escape(Array(bytes))
    }

    /// The name the shard is recorded under: a plain name itself, or a key without its leading `/`.
    public static func display(_ name: String) -> String {
        isKey(name) ? String(name.unicodeScalars.dropFirst()) : name
    }

    /// The exact bytes of the directory entry that `name` (a plain name or a key) stands for.
    public static func entryBytes(_ name: String) -> [UInt8] {
        guard isKey(name) else { return Array(name.utf8) }
        var bytes: [UInt8] = []
        let utf8 = Array(name.utf8.dropFirst())
        var i = 0
        while i < utf8.count {
            if utf8[i] == UInt8(ascii: "%"), i + 2 < utf8.count, let high = hexValue(utf8[i + 1]), let low = hexValue(utf8[i + 2]) {
                bytes.append(high << 4 | low)
                i += 3
            } else {
                bytes.append(utf8[i])
                i += 1
            }
        }
        return bytes
    }

    /// `%XX` for `%`, for control characters and for every byte of an invalid UTF-8 sequence; other bytes as is.
    static func escape(_ bytes: [UInt8]) -> String {
        var out = ""
        var i = 0
        func hex(_ b: UInt8) {
            let digits = Array("0123456789ABCDEF".utf8)
            out.unicodeScalars.append("%")
            out.unicodeScalars.append(Unicode.Scalar(digits[Int(b >> 4)]))
            out.unicodeScalars.append(Unicode.Scalar(digits[Int(b & 15)]))
        }
        while i < bytes.count {
            let length = utf8SequenceLength(bytes, at: i)
            if length == 0 {
                hex(bytes[i])
                i += 1
                continue
            }
            let sequence = bytes[i..<(i + length)]
            let scalar = String(decoding: sequence, as: UTF8.self).unicodeScalars.first!
            if isControl(scalar) || scalar == "%" || scalar == "\0" {
                sequence.forEach(hex)
            } else {
                out.unicodeScalars.append(scalar)
            }
            i += length
        }
        return out
    }

    /// The length of the valid UTF-8 sequence starting at `i`, or 0 when the byte there does not start one.
    static func utf8SequenceLength(_ bytes: [UInt8], at i: Int) -> Int {
        let b0 = bytes[i]
        let length: Int
        switch b0 {
        case 0x00...0x7F: return 1
        case 0xC2...0xDF: length = 2
        case 0xE0...0xEF: length = 3
        case 0xF0...0xF4: length = 4
        default: return 0
        }
        guard i + length <= bytes.count else { return 0 }
        return String(validating: bytes[i..<(i + length)], as: UTF8.self) == nil ? 0 : length
    }

    /// C0 and C1 control characters and DEL.
    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        default: return nil
        }
    }

    /// The name under which the `ordinal`-th shard called `name` (a plain name or a key) is recorded: its display
    /// name for the first, then `DISPLAY~2`, `DISPLAY~3`, … Such names never end in `.zst`, so they cannot collide
    /// with a producer's name.
    public static func instance(_ name: String, ordinal: Int) -> String {
        let base = display(name)
        return ordinal <= 1 ? base : base + "~" + String(ordinal)
    }

    /// The producer's (display) name for an instance name (the inverse of ``instance(_:ordinal:)``).
    public static func source(ofInstance instance: String) -> String {
        guard let tilde = instance.lastIndex(of: "~") else { return instance }
        let digits = instance[instance.index(after: tilde)...]
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return instance }
        return String(instance[..<tilde])
    }

    /// The ordinal of an instance name: N for `DISPLAY~N`, 1 for the display name itself.
    public static func ordinal(ofInstance instance: String) -> Int {
        let source = source(ofInstance: instance)
        guard source.utf8.count < instance.utf8.count else { return 1 }
        return Int(instance.dropFirst(source.count + 1)) ?? 1
    }

    /// `OUTPUT/INSTANCE.summary.json`'s file name.
    public static func summaryFile(_ instance: String) -> String { instance + ".summary.json" }

    /// `OUTPUT/INSTANCE.error.json`'s file name.
    public static func errorFile(_ instance: String) -> String { instance + ".error.json" }
}
