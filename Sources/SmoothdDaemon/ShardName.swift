/// The producer protocol's rule for which spool entries are finished shards.
public enum ShardName {
    /// The longest accepted shard name, in UTF-8 bytes. Output names append up to 24 bytes
    /// (`~N` and `.summary.json`), which must stay within the 255-byte filename limit.
    public static let maximumLength = 200

    /// Whether `name` is a final shard name: it ends in `.zst`, does not start with `.`, does not end in `.tmp` or
    /// `.part` (which `*.zst` already excludes), holds no `/` or NUL, and is at most ``maximumLength`` bytes.
    /// The caller must still check that the entry is a regular file.
    public static func isFinal(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= maximumLength else { return false }
        guard !name.hasPrefix("."), name.hasSuffix(".zst"), name != ".zst" else { return false }
        guard !name.hasSuffix(".tmp"), !name.hasSuffix(".part") else { return false }
        return !name.utf8.contains(UInt8(ascii: "/")) && !name.utf8.contains(0)
    }

    /// The name under which the `ordinal`-th shard called `name` is recorded: `name` itself for the first, then
    /// `name~2`, `name~3`, … Such names never end in `.zst`, so they cannot collide with a producer's name.
    public static func instance(_ name: String, ordinal: Int) -> String {
        ordinal <= 1 ? name : name + "~" + String(ordinal)
    }

    /// The producer's name for an instance name (the inverse of ``instance(_:ordinal:)``).
    public static func source(ofInstance instance: String) -> String {
        guard let tilde = instance.lastIndex(of: "~") else { return instance }
        let digits = instance[instance.index(after: tilde)...]
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return instance }
        return String(instance[..<tilde])
    }

    /// `OUTPUT/INSTANCE.summary.json`'s file name.
    public static func summaryFile(_ instance: String) -> String { instance + ".summary.json" }

    /// `OUTPUT/INSTANCE.error.json`'s file name.
    public static func errorFile(_ instance: String) -> String { instance + ".error.json" }
}
