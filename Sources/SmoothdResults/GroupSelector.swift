import SmoothdJSON
import SmoothdRuns

/// `key=value[,key=value]` over the group-by keys, choosing one group of a merge (`smoothd compare --a`/`--b`).
/// A value matches a string equal to it, a number equal to it as a number (`step=1000` matches 1000 and 1000.0),
/// `true`/`false` the booleans and `null` an absent key.
public struct GroupSelector: Sendable, CustomStringConvertible {
    /// The text as given.
    public let text: String
    /// The pairs, in the order given.
    public let pairs: [(key: String, value: String)]

    /// Parses `text`; a key may appear once.
    public init(parsing text: String) throws(ComparisonError) {
        self.text = text
        var pairs: [(key: String, value: String)] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard let equals = part.firstIndex(of: "="), equals != part.startIndex else {
                throw ComparisonError("invalid selector '\(text)': '\(part)' is not key=value (give key=value[,key=value…])")
            }
            let key = String(part[..<equals]), value = String(part[part.index(after: equals)...])
            if pairs.contains(where: { $0.key == key }) { throw ComparisonError("invalid selector '\(text)': key '\(key)' is given twice") }
            pairs.append((key, value))
        }
        self.pairs = pairs
    }

    /// The text as given.
    public var description: String { text }

    /// Checks that every key is one of `groupBy`'s.
    public func check(against groupBy: GroupBy) throws(ComparisonError) {
        for pair in pairs where !groupBy.keys.contains(pair.key) {
            throw ComparisonError("selector '\(text)': '\(pair.key)' is not a group-by key (groups are by \(groupBy); pass --group-by to change that)")
        }
    }

    /// True when every pair matches the key's value.
    public func matches(_ key: RunKey) -> Bool {
        pairs.allSatisfy { pair in
            guard let value = key.members.first(where: { $0.0 == pair.key })?.1 else { return false }
            switch value {
            case .null: return pair.value == "null"
            case .bool(let b): return pair.value == (b ? "true" : "false")
            case .string(let s): return s == pair.value
            case .int, .double:
                guard let number = Double(pair.value) else { return false }
                return RunKey.compareValues(value, .double(number)) == 0
            case .array, .object: return value.serialized() == pair.value
            }
        }
    }
}

/// A `smoothd compare` problem: a bad selector, one matching no group or several, or inputs it cannot compare.
public struct ComparisonError: Error, Sendable, CustomStringConvertible {
    /// What is wrong.
    public var description: String
    init(_ description: String) { self.description = description }
}
