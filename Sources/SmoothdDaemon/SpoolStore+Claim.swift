#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What happened when the daemon tried to claim a spool entry.
enum ClaimResult: Sendable, Equatable {
    /// Renamed into the work directory.
    case claimed(WorkItem)
    /// The entry is gone (claimed already, or the producer removed it).
    case vanished
    /// Not a regular file with a final name: left alone.
    case ignored
}

extension SpoolStore {
    /// The entry `name` in the spool when it is a regular file with a final name (or one too long, which is
    /// quarantined), else `nil`.
    func candidate(_ name: String) throws(FileSystemError) -> EntryInfo? {
        guard ShardName.isShardShaped(name), let info = try spool.entry(name), info.kind == .regular else { return nil }
        return info
    }

    /// Final-named regular files in the spool (and overlong ones), oldest modification first (rescans). Names are
    /// plain names or escaped keys (see ``ShardName``).
    func scanSpool() throws(FileSystemError) -> [(name: String, size: UInt64)] {
        try scanSpoolEntries().map { ($0.name, $0.info.size) }
    }

    /// Unfinished regular files in the spool (see ``ShardName/isUnfinished(_:)``), for the stale-partial report.
    func scanPartials() throws(FileSystemError) -> [StalePartials.Entry] {
        var found: [StalePartials.Entry] = []
        for name in try spool.names() where ShardName.isUnfinished(name) && name != SpoolStore.workDirectoryName {
            guard let info = try spool.entry(name), info.kind == .regular else { continue }
            found.append(StalePartials.Entry(name: name, size: info.size, modified: Double(info.modificationNanoseconds) / 1e9))
        }
        return found
    }

    /// ``scanSpool()`` with each entry's full information.
    func scanSpoolEntries() throws(FileSystemError) -> [(name: String, info: EntryInfo)] {
        var found: [(name: String, info: EntryInfo)] = []
        for name in try spool.names() where ShardName.isShardShaped(name) {
            guard let info = try spool.entry(name), info.kind == .regular else { continue }
            found.append((name, info))
        }
        found.sort { ($0.info.modificationNanoseconds, $0.name) < ($1.info.modificationNanoseconds, $1.name) }
        return found
    }

    /// Claims the spool entry `name` (a plain name or an escaped key) by renaming it into the work directory
    /// under its first unused instance name (its display name, then `~2`, `~3`, …), so a reused name never
    /// overwrites an earlier shard's records. Must be called by one task at a time.
    ///
    /// O(1) however often a name was used: the highest ordinal of every reused name is known (``ReusedNames``),
    /// so a claim checks the display name, or the next ordinal, and moves on only past names that something else
    /// took (each check is one ``isRecorded(_:)`` probe, counted in ``claimProbes``).
    func claim(_ name: String) throws(FileSystemError) -> ClaimResult {
        guard ShardName.isFinal(name) else { return .ignored }
        guard let info = try spool.entry(name) else { return .vanished }
        guard info.kind == .regular else { return .ignored }
        let display = ShardName.display(name)
        var ordinal = try reusedNames().highest(of: display).map { $0 + 1 } ?? 1
        while true {
            let instance = try instanceName(name, ordinal: ordinal, of: name)
            ordinal += 1
            claimProbeCount.withLock { $0 += 1 }
            if try isRecorded(instance) { continue }
            do {
                try spool.rename(name, to: work, as: instance, replace: false)
            } catch {
                if error.errorNumber == ENOENT { return .vanished }
                if error.errorNumber == EEXIST { continue }
                throw error
            }
            if ordinal > 2 { reusedNamesState.withLock { $0?.note(display, ordinal: ordinal - 1) } }
            // The entry was checked before the rename; if a producer swapped in something else meanwhile
            // (a symlink, a FIFO), put it back untouched.
            guard let claimed = try work.entry(instance), claimed.kind == .regular else {
                try? work.rename(instance, to: spool, as: name, replace: false)
                return .ignored
            }
            return .claimed(WorkItem(source: display, instance: instance, size: claimed.size))
        }
    }

    /// ``isRecorded(_:)`` probes made by claims so far (tests check that a claim makes O(1) of them).
    var claimProbes: Int { claimProbeCount.withLock { $0 } }

    /// The reused names, found by one listing of the directories that hold instance names at the first claim.
    private func reusedNames() throws(FileSystemError) -> ReusedNames {
        if let known = reusedNamesState.withLock({ $0 }) { return known }
        var found = ReusedNames()
        let superseded = try DirectoryHandle.openIfPresent(parent: output, name: SpoolStore.supersededDirectoryName)
        for directory in [output, work, failed] + [done, superseded].compactMap({ $0 }) {
            for entry in try directory.names() {
                var instance = entry
                for suffix in [".summary.json", ".error.json"] where instance.hasSuffix(suffix) { instance = String(instance.dropLast(suffix.count)) }
                // `done/INSTANCE.dupN`, `superseded/…json.dupN`: names kept beside something not of ours.
                let parts = instance.split(separator: ".", omittingEmptySubsequences: false)
                if let last = parts.last, last.hasPrefix("dup"), last.count > 3, last.dropFirst(3).allSatisfy({ $0.isASCII && $0.isNumber }) {
                    instance = parts.dropLast().joined(separator: ".")
                    for suffix in [".summary.json", ".error.json"] where instance.hasSuffix(suffix) { instance = String(instance.dropLast(suffix.count)) }
                }
                found.note(ShardName.source(ofInstance: instance), ordinal: ShardName.ordinal(ofInstance: instance))
            }
        }
        reusedNamesState.withLock { $0 = found }
        return found
    }

    /// ``ShardName/instance(_:ordinal:)`` of `base`, refused (`ENAMETOOLONG`) beyond ``ShardName/maximumOrdinal``,
    /// where derived names would no longer fit in NAME_MAX. `name` is the spool entry, for the message.
    func instanceName(_ base: String, ordinal: Int, of name: String) throws(FileSystemError) -> String {
        guard ordinal <= ShardName.maximumOrdinal else {
            throw FileSystemError(operation: "claim (\(ShardName.maximumOrdinal) shards of this name already)", path: spool.display(name),
                                  errorNumber: ENAMETOOLONG)
        }
        return ShardName.instance(base, ordinal: ordinal)
    }
}

/// The highest ordinal used so far of each name that was used more than once (names used once are not kept).
struct ReusedNames: Sendable {
    private var highest: [String: Int] = [:]

    /// The highest ordinal of `display` in use, or nil when at most its display name is.
    func highest(of display: String) -> Int? { highest[display] }

    /// `display~ordinal` is in use.
    mutating func note(_ display: String, ordinal: Int) {
        guard ordinal >= 2 else { return }
        highest[display] = max(highest[display] ?? 0, ordinal)
    }
}
