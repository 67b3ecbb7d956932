/// Text helpers for the report's HTML and SVG: escaping and fixed-point numbers.
enum HTMLText {
    /// `text` safe inside an element or a quoted attribute.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }

    /// `value` with `digits` decimals (half away from zero), `–` when absent or not finite.
    static func fixed(_ value: Double?, _ digits: Int) -> String {
        guard let value, value.isFinite else { return "–" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let scaled = (abs(value) * scale).rounded()
        guard scaled < 9e15 else { return value.description }  // beyond exact integers: rare, and plain text is fine
        let n = UInt64(scaled)
        var fraction = String(n % UInt64(scale))
        fraction = String(repeating: "0", count: max(0, digits - fraction.count)) + fraction
        let sign = value < 0 && n > 0 ? "-" : ""
        return sign + String(n / UInt64(scale)) + (digits > 0 ? "." + fraction : "")
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
