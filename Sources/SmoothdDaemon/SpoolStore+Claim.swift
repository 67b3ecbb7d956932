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
    func claim(_ name: String) throws(FileSystemError) -> ClaimResult {
        guard ShardName.isFinal(name) else { return .ignored }
        guard let info = try spool.entry(name) else { return .vanished }
        guard info.kind == .regular else { return .ignored }
        var ordinal = 1
        while true {
            let instance = try instanceName(name, ordinal: ordinal, of: name)
            ordinal += 1
            if try isRecorded(instance) { continue }
            do {
                try spool.rename(name, to: work, as: instance, replace: false)
            } catch {
                if error.errorNumber == ENOENT { return .vanished }
                if error.errorNumber == EEXIST { continue }
                throw error
            }
            // The entry was checked before the rename; if a producer swapped in something else meanwhile
            // (a symlink, a FIFO), put it back untouched.
            guard let claimed = try work.entry(instance), claimed.kind == .regular else {
                try? work.rename(instance, to: spool, as: name, replace: false)
                return .ignored
            }
            return .claimed(WorkItem(source: ShardName.display(name), instance: instance, size: claimed.size))
        }
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
