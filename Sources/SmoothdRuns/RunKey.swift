import SmoothdJSON

/// An ordered object of meta values (a group key or a run key), compared by the documented order:
/// values left to right, each `null` < `false` < `true` < numbers (by value) < strings (by code point).
/// Values equal in that order are one value (`1` and `1.0`; `true` and `1` are two).
public struct RunKey: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The keys and values, in key order (`null` for an absent key).
    public let members: [(String, JSONValue)]
    /// Bytes equal exactly when the values are equal in the order above (hashing Swift strings would
    /// merge canonically equivalent ones, which the order keeps apart).
    private let token: [UInt8]

    /// The key of `keys` taken from `meta` (nil or a non-object: every value null).
    public init(keys: [String], meta: JSONValue?) {
        members = keys.map { key in (key, meta?[key] ?? .null) }
        var token: [UInt8] = []
        for (_, value) in members { RunKey.appendToken(of: value, to: &token) }
        self.token = token
    }

    /// The key as a JSON object.
    public var json: JSONValue { .object(members) }

    /// The compact JSON text, for messages.
    public var description: String { json.serialized() }

    /// Equal when every value is equal in the documented order.
    public static func == (lhs: RunKey, rhs: RunKey) -> Bool { lhs.token == rhs.token }

    /// Hashes what `==` compares.
    public func hash(into hasher: inout Hasher) { hasher.combine(token) }

    /// The documented order, values compared left to right.
    public static func < (lhs: RunKey, rhs: RunKey) -> Bool {
        for (a, b) in zip(lhs.members, rhs.members) {
            let order = compareValues(a.1, b.1)
            if order != 0 { return order < 0 }
        }
        return lhs.members.count < rhs.members.count
    }

    /// −1, 0 or 1: the documented order of two values. Arrays and objects (possible in a run key, never
    /// in a group key) come after strings, by their JSON text.
    public static func compareValues(_ a: JSONValue, _ b: JSONValue) -> Int {
        let (ra, rb) = (rank(a), rank(b))
        if ra != rb { return ra < rb ? -1 : 1 }
        switch (a, b) {
        case (.bool(let x), .bool(let y)): return x == y ? 0 : (x ? 1 : -1)
        case (.string(let x), .string(let y)): return compareBytes(Array(x.utf8), Array(y.utf8))
        case (.int(let x), .int(let y)): return x == y ? 0 : (x < y ? -1 : 1)
        case (.double(let x), .double(let y)): return x == y ? 0 : (x < y ? -1 : 1)
        case (.int(let x), .double(let y)): return compareInt(x, y)
        case (.double(let x), .int(let y)): return -compareInt(y, x)
        case (.null, .null): return 0
        default: return compareBytes(Array(a.serialized().utf8), Array(b.serialized().utf8))
        }
    }

    private static func rank(_ value: JSONValue) -> Int {
        switch value {
        case .null: return 0
        case .bool(let b): return b ? 2 : 1
        case .int, .double: return 3
        case .string: return 4
        case .array, .object: return 5
        }
    }

    /// Exact comparison of an integer with a double (no rounding of either).
    private static func compareInt(_ x: Int64, _ y: Double) -> Int {
        if y >= 0x1p63 { return -1 }
        if y < -0x1p63 { return 1 }
        let whole = y.rounded(.down)
        let w = Int64(whole)
        if x != w { return x < w ? -1 : 1 }
        return y > whole ? -1 : 0
    }

    private static func compareBytes(_ a: [UInt8], _ b: [UInt8]) -> Int {
        if a == b { return 0 }
        return a.lexicographicallyPrecedes(b) ? -1 : 1
    }

    private static func appendToken(of value: JSONValue, to token: inout [UInt8]) {
        func tagged(_ tag: Character, _ text: some Sequence<UInt8>) {
            let bytes = Array(text)
            token.append(tag.asciiValue!)
            token += Array(String(bytes.count).utf8) + [0x3A]
            token += bytes
        }
        switch value {
        case .null: token.append(0x6E)
        case .bool(let b): token.append(b ? 0x74 : 0x66)
        case .int(let v): tagged("i", String(v).utf8)
        case .double(let v):
            // An integral double in Int64 range is that integer; any other double is its exact text.
            if v.rounded() == v, v >= -0x1p63, v < 0x1p63 { tagged("i", String(Int64(v)).utf8) } else { tagged("d", v.description.utf8) }
        case .string(let s): tagged("s", s.utf8)
        case .array, .object: tagged("j", value.serialized().utf8)
        }
    }
}
