/// The meta keys results are grouped by (`--group-by`), and the keys a run is told apart by.
public struct GroupBy: Sendable, Equatable, CustomStringConvertible {
    /// The keys in `--group-by` order; empty for `none` (one group).
    public let keys: [String]

    /// `model`, `checkpoint`, `split`: the default group-by, and the keys every run key includes.
    public static let runKeyNames = ["model", "checkpoint", "split"]
    /// The default: `model,checkpoint,split`.
    public static let standard = GroupBy(keys: runKeyNames)

    /// Groups by `keys` (which must be distinct and non-empty; use `init(parsing:)` for user input).
    public init(keys: [String]) {
        self.keys = keys
    }

    /// Parses `--group-by`: `none`, or `KEY[,KEY…]` (distinct, non-empty, spaces around keys trimmed).
    public init(parsing text: String) throws(GroupByError) {
        let trimmed = text.trimmingWhitespace
        if trimmed == "none" {
            self.init(keys: [])
            return
        }
        var keys: [String] = []
        for part in trimmed.split(separator: ",", omittingEmptySubsequences: false) {
            let key = String(part).trimmingWhitespace
            if key.isEmpty { throw GroupByError(text: text, reason: "a key is empty") }
            if key == "none" { throw GroupByError(text: text, reason: "'none' cannot be combined with keys") }
            if keys.contains(key) { throw GroupByError(text: text, reason: "key '\(key)' is given twice") }
            keys.append(key)
        }
        self.init(keys: keys)
    }

    /// The run key's keys: these keys, then those of `model`, `checkpoint`, `split` not among them.
    /// A coarser group-by thus never makes shards of two checkpoints one shard.
    public var runKeys: [String] { keys + GroupBy.runKeyNames.filter { !keys.contains($0) } }

    /// `none` or the comma-separated keys.
    public var description: String { keys.isEmpty ? "none" : keys.joined(separator: ",") }
}

/// A `--group-by` value that cannot be used.
public struct GroupByError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The value given.
    public var text: String
    /// Why it cannot be used.
    public var reason: String

    /// `invalid --group-by 'TEXT': REASON`.
    public var description: String { "invalid --group-by '\(text)': \(reason) (give none, or KEY[,KEY…])" }
}

extension String {
    var trimmingWhitespace: String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
