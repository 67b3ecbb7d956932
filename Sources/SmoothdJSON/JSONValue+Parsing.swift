/// Why a JSON text could not be read, and where (a byte offset into the text).
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Byte offset in the parsed text.
    public var offset: Int
    /// What was wrong.
    public var reason: String
    /// `reason at byte offset`.
    public var description: String { "\(reason) at byte \(offset)" }
}

extension JSONValue {
    /// The deepest nesting accepted; deeper input is rejected instead of exhausting the stack.
    public static let maximumNestingDepth = 256

    /// Parses strict JSON (RFC 8259) from UTF-8 bytes. Invalid UTF-8 is an error.
    public static func parse<Bytes: Collection>(utf8 bytes: Bytes) throws(JSONParseError) -> JSONValue
    where Bytes.Element == UInt8 {
        var parser = JSONParser(bytes: Array(bytes))
        return try parser.parseDocument()
    }

    /// Parses strict JSON (as ``parse(utf8:)``), keeping of a top-level object only the members named in `keep`:
    /// the others are checked (the same grammar, UTF-8 and nesting limit, so a malformed document is still an
    /// error) but not built, which is most of the cost of parsing. A top-level value that is not an object is
    /// returned whole.
    public static func parse<Bytes: Collection>(utf8 bytes: Bytes, keepingMembers keep: Set<String>) throws(JSONParseError) -> JSONValue
    where Bytes.Element == UInt8 {
        var parser = JSONParser(bytes: Array(bytes))
        parser.keep = keep
        return try parser.parseDocument()
    }

    /// Parses strict JSON from a string.
    public static func parse(_ text: String) throws(JSONParseError) -> JSONValue {
        try parse(utf8: Array(text.utf8))
    }
}

private struct JSONParser {
    let bytes: [UInt8]
    var index = 0
    var depth = 0
    /// The top-level members to build (all when nil); the others are only checked (``skipValue()``).
    var keep: Set<String>?

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        skipWhitespace()
        let value = try parseValue()
        skipWhitespace()
        if index != bytes.count { throw fail("unexpected data after the JSON value") }
        return value
    }

    func fail(_ reason: String) -> JSONParseError { JSONParseError(offset: index, reason: reason) }

    mutating func skipWhitespace() {
        while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x0D || bytes[index] == 0x09 {
            index += 1
        }
    }

    mutating func parseValue() throws(JSONParseError) -> JSONValue {
        guard index < bytes.count else { throw fail("unexpected end of JSON") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw fail("unexpected character in JSON")
        }
    }

    mutating func expectLiteral(_ literal: StaticString) throws(JSONParseError) {
        let n = literal.utf8CodeUnitCount
        guard index + n <= bytes.count else { throw fail("unexpected end of JSON") }
        let ok = literal.withUTF8Buffer { lit in (0..<n).allSatisfy { bytes[index + $0] == lit[$0] } }
        guard ok else { throw fail("invalid literal") }
        index += n
    }

    mutating func enter() throws(JSONParseError) {
        depth += 1
        if depth > JSONValue.maximumNestingDepth { throw fail("JSON nested deeper than \(JSONValue.maximumNestingDepth)") }
    }

    /// After the opening `{` or `[`: enters one level deeper; true (and back out) when `closer` follows at once.
    mutating func openContainer(closedBy closer: UInt8) throws(JSONParseError) -> Bool {
        try enter()
        index += 1
        skipWhitespace()
        guard index < bytes.count, bytes[index] == closer else { return false }
        index += 1
        depth -= 1
        return true
    }

    /// After an item: true when `,` (another item follows), false (and back out) at `closer`.
    mutating func nextItem(closedBy closer: UInt8) throws(JSONParseError) -> Bool {
        skipWhitespace()
        guard index < bytes.count else { throw fail("unexpected end of JSON") }
        if bytes[index] == UInt8(ascii: ",") { index += 1; return true }
        guard bytes[index] == closer else { throw fail("expected ',' or '\(Character(Unicode.Scalar(closer)))'") }
        index += 1
        depth -= 1
        return false
    }

    mutating func parseObject() throws(JSONParseError) -> JSONValue {
        var members: [(String, JSONValue)] = []
        if try openContainer(closedBy: UInt8(ascii: "}")) { return .object(members) }
        repeat {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            let key = try parseString()
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            index += 1
            skipWhitespace()
            if depth == 1, let keep, !keep.contains(key) {
                try skipValue()
            } else {
                members.append((key, try parseValue()))
            }
        } while try nextItem(closedBy: UInt8(ascii: "}"))
        return .object(members)
    }

    mutating func parseArray() throws(JSONParseError) -> JSONValue {
        var items: [JSONValue] = []
        if try openContainer(closedBy: UInt8(ascii: "]")) { return .array(items) }
        repeat {
            skipWhitespace()
            items.append(try parseValue())
        } while try nextItem(closedBy: UInt8(ascii: "]"))
        return .array(items)
    }

    mutating func parseHex4() throws(JSONParseError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw fail("unexpected end of JSON") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[index]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail("invalid \\u escape")
            }
            v = v << 4 | d
            index += 1
        }
        return v
    }

    mutating func parseString() throws(JSONParseError) -> String {
        index += 1  // opening quote
        // Fast path: a run of printable ASCII up to the closing quote (keys, numbers as text, most values) is its
        // own UTF-8; anything else (escapes, control characters, non-ASCII) goes through the checks below.
        var end = index
        while end < bytes.count, bytes[end] >= 0x20, bytes[end] < 0x80, bytes[end] != UInt8(ascii: "\""), bytes[end] != UInt8(ascii: "\\") {
            end += 1
        }
        if end < bytes.count, bytes[end] == UInt8(ascii: "\"") {
            let text = String(decoding: bytes[index..<end], as: UTF8.self)
            index = end + 1
            return text
        }
        var scalars = String.UnicodeScalarView()
        try scanString(into: &scalars, building: true)
        return String(scalars)
    }

    /// From inside a string to past its closing quote, checking escapes, control characters and UTF-8; with
    /// `building`, appends its scalars to `scalars`.
    mutating func scanString(into scalars: inout String.UnicodeScalarView, building: Bool) throws(JSONParseError) {
        while true {
            guard index < bytes.count else { throw fail("unterminated string") }
            let c = bytes[index]
            if c == UInt8(ascii: "\"") { index += 1; return }
            if c < 0x20 { throw fail("control character in string") }
            let scalar: Unicode.Scalar
            if c == UInt8(ascii: "\\") {
                index += 1
                guard index < bytes.count else { throw fail("unterminated string") }
                let e = bytes[index]
                index += 1
                switch e {
                case UInt8(ascii: "\""): scalar = "\""
                case UInt8(ascii: "\\"): scalar = "\\"
                case UInt8(ascii: "/"): scalar = "/"
                case UInt8(ascii: "b"): scalar = "\u{08}"
                case UInt8(ascii: "f"): scalar = "\u{0C}"
                case UInt8(ascii: "n"): scalar = "\n"
                case UInt8(ascii: "r"): scalar = "\r"
                case UInt8(ascii: "t"): scalar = "\t"
                case UInt8(ascii: "u"): scalar = try parseUnicodeEscape()
                default: throw fail("invalid escape in string")
                }
            } else if c < 0x80 {
                index += 1
                scalar = Unicode.Scalar(c)
            } else {
                scalar = try decodeUTF8Scalar()
            }
            if building { scalars.append(scalar) }
        }
    }

    /// After `\\u`: the escaped scalar (a surrogate pair as one).
    mutating func parseUnicodeEscape() throws(JSONParseError) -> Unicode.Scalar {
        var code = try parseHex4()
        if (0xD800...0xDBFF).contains(code) {
            guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
            else { throw fail("unpaired surrogate in string") }
            index += 2
            let low = try parseHex4()
            guard (0xDC00...0xDFFF).contains(low) else { throw fail("unpaired surrogate in string") }
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
        } else if (0xDC00...0xDFFF).contains(code) {
            throw fail("unpaired surrogate in string")
        }
        guard let scalar = Unicode.Scalar(code) else { throw fail("invalid \\u escape") }
        return scalar
    }

    /// Decodes one UTF-8 scalar at `index`, rejecting overlong forms, surrogates and stray bytes.
    mutating func decodeUTF8Scalar() throws(JSONParseError) -> Unicode.Scalar {
        let b0 = bytes[index]
        if b0 < 0x80 { index += 1; return Unicode.Scalar(b0) }
        let length: Int
        let minimum: UInt32
        var code: UInt32
        switch b0 {
        case 0xC2...0xDF: length = 2; minimum = 0x80; code = UInt32(b0 & 0x1F)
        case 0xE0...0xEF: length = 3; minimum = 0x800; code = UInt32(b0 & 0x0F)
        case 0xF0...0xF4: length = 4; minimum = 0x10000; code = UInt32(b0 & 0x07)
        default: throw fail("invalid UTF-8")
        }
        guard index + length <= bytes.count else { throw fail("invalid UTF-8") }
        for k in 1..<length {
            let b = bytes[index + k]
            guard b & 0xC0 == 0x80 else { throw fail("invalid UTF-8") }
            code = code << 6 | UInt32(b & 0x3F)
        }
        guard code >= minimum, code <= 0x10FFFF, !(0xD800...0xDFFF).contains(code), let scalar = Unicode.Scalar(code) else {
            throw fail("invalid UTF-8")
        }
        index += length
        return scalar
    }

    mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = index
        let isInteger = try scanNumber()
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        if isInteger, let v = Int64(text) { return .int(v) }
        guard let d = Double(text) else { throw JSONParseError(offset: start, reason: "invalid number") }
        return .double(d)
    }

    /// Moves past a number, checking its grammar; whether it is an integer (no fraction, no exponent).
    mutating func scanNumber() throws(JSONParseError) -> Bool {
        var isInteger = true
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        func digits(_ p: inout JSONParser) -> Int {
            let s = p.index
            while p.index < p.bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(p.bytes[p.index]) { p.index += 1 }
            return p.index - s
        }
        guard index < bytes.count else { throw fail("invalid number") }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else if digits(&self) == 0 {
            throw fail("invalid number")
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            isInteger = false
            index += 1
            if digits(&self) == 0 { throw fail("invalid number") }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            isInteger = false
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            if digits(&self) == 0 { throw fail("invalid number") }
        }
        return isInteger
    }
}

extension JSONParser {
    /// Moves past one value, checking it as ``parseValue()`` would, without building it.
    mutating func skipValue() throws(JSONParseError) {
        guard index < bytes.count else { throw fail("unexpected end of JSON") }
        switch bytes[index] {
        case UInt8(ascii: "{"):
            if try openContainer(closedBy: UInt8(ascii: "}")) { return }
            repeat {
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
                try skipString()
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                index += 1
                skipWhitespace()
                try skipValue()
            } while try nextItem(closedBy: UInt8(ascii: "}"))
        case UInt8(ascii: "["):
            if try openContainer(closedBy: UInt8(ascii: "]")) { return }
            repeat {
                skipWhitespace()
                try skipValue()
            } while try nextItem(closedBy: UInt8(ascii: "]"))
        case UInt8(ascii: "\""): try skipString()
        case UInt8(ascii: "t"): try expectLiteral("true")
        case UInt8(ascii: "f"): try expectLiteral("false")
        case UInt8(ascii: "n"): try expectLiteral("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): _ = try scanNumber()
        default: throw fail("unexpected character in JSON")
        }
    }

    /// Moves past a string, checking its escapes and UTF-8 as ``parseString()`` does.
    mutating func skipString() throws(JSONParseError) {
        index += 1  // opening quote
        var none = String.UnicodeScalarView()
        try scanString(into: &none, building: false)
    }
}
