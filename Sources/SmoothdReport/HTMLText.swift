/// Text helpers for the report's HTML and SVG: escaping and fixed-point numbers.
enum HTMLText {
    /// `text` safe inside an element or a quoted attribute.
    static func escape(_ text: String) -> String {
        // Most text (numbers, keys, paths) needs nothing: scan the bytes once rather than walk characters.
        guard text.utf8.contains(where: { $0 == 0x26 || $0 == 0x3C || $0 == 0x3E || $0 == 0x22 || $0 == 0x27 }) else { return text }
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for c in text {
            if let entity = entities[c] { out += entity } else { out.append(c) }
        }
        return out
    }

    /// The characters `escape` replaces, and their entities.
    private static let entities: [Character: String] = ["&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;"]

    /// `value` with `digits` decimals (half away from zero), `–` when absent or not finite.
    static func fixed(_ value: Double?, _ digits: Int) -> String {
        guard let value, value.isFinite else { return "–" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let scaled = (abs(value) * scale).rounded()
        guard scaled < 9e15 else { return value.description }  // beyond exact integers: rare, and plain text is fine
        let n = UInt64(scaled)
        let sign = value < 0 && n > 0 ? "-" : ""
        guard digits > 0 else { return sign + String(n) }
        let fraction = String(n % UInt64(scale))
        return sign + String(n / UInt64(scale)) + "." + String(repeating: "0", count: max(0, digits - fraction.count)) + fraction
    }

    /// A coordinate with two decimals: enough for a screen, and short.
    static func px(_ value: Double) -> String { fixed(value, 2) }

    /// A metric for a table: four decimals, or six significant-ish digits for large values.
    static func metric(_ value: Double?) -> String {
        guard let value, value.isFinite else { return "–" }
        return abs(value) >= 1000 ? fixed(value, 1) : fixed(value, 4)
    }

    /// The shortest round-tripping text of `value` (for `data-*` attributes that tests compare with the JSON).
    static func exact(_ value: Double?) -> String { value.map(\.description) ?? "null" }

    /// `json` safe inside a `<script>` element: `<` (which only occurs inside JSON strings) becomes `\\u003c`, which
    /// means the same there, so no `</script>` or `<!--` can end or confuse the block.
    static func scriptSafe(_ json: String) -> String {
        guard json.utf8.contains(0x3C) else { return json }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(json.utf8.count + 64)
        for b in json.utf8 {
            if b == 0x3C { bytes += Array("\\u003c".utf8) } else { bytes.append(b) }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Digit runs compared as numbers, other text by code point: `ckpt-9` < `ckpt-10`.
    static func naturalLess(_ a: String, _ b: String) -> Bool {
        let x = Array(a.unicodeScalars), y = Array(b.unicodeScalars)
        var i = 0, j = 0
        func isDigit(_ s: Unicode.Scalar) -> Bool { ("0"..."9").contains(s) }
        while i < x.count, j < y.count {
            if isDigit(x[i]), isDigit(y[j]) {
                var ie = i, je = j
                while ie < x.count, isDigit(x[ie]) { ie += 1 }
                while je < y.count, isDigit(y[je]) { je += 1 }
                // Compare without leading zeros: by length, then digit by digit.
                var p = i, q = j
                while p < ie - 1, x[p] == "0" { p += 1 }
                while q < je - 1, y[q] == "0" { q += 1 }
                if ie - p != je - q { return ie - p < je - q }
                while p < ie {
                    if x[p] != y[q] { return x[p].value < y[q].value }
                    p += 1
                    q += 1
                }
                i = ie
                j = je
            } else {
                if x[i] != y[j] { return x[i].value < y[j].value }
                i += 1
                j += 1
            }
        }
        return x.count - i < y.count - j
    }
}
