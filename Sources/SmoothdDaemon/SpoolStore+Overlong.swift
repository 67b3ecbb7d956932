#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import SmoothdJSON

/// How the quarantine of a shard with an overlong name ended.
enum OverlongOutcome: Sendable {
    /// Its error record is committed and the file (of `compressedBytes`) is in `failed/` under `item.instance`.
    case quarantined(WorkItem, compressedBytes: UInt64)
    /// The entry is gone (the producer removed it), or is not a regular file.
    case vanished
    /// Shutdown closed the commit gate first; the file stays in the spool.
    case abandoned
    /// A file-system error; the file stays in the spool (and is tried again after a backoff).
    case failed(ClaimFailure)
}

extension SpoolStore {
    /// Quarantines the spool entry `name`, whose name is too long to derive record names from
    /// (``ShardName/isOverlong(_:)``): writes `OUTPUT/SHORT.error.json` (kind `name_too_long`, `shard` the whole
    /// escaped name, `instance` SHORT), counts it in the totals, then renames the entry straight to
    /// `failed/SHORT`, where SHORT is ``ShardName/shortened(_:)`` (then `SHORT~2`, … for a reused name).
    /// Blocking; run it on a worker thread.
    ///
    /// Exactly once across crashes: the record is written before the move, and an existing record of the same
    /// name whose file is not yet in `failed/` is that earlier attempt, interrupted. If this run did not write it,
    /// the totals rebuilt at start counted it, and only the move is finished; if this run wrote it but did not
    /// count it (its directory `fsync` failed), it is written again and counted.
    func quarantineOverlong(_ name: String, totals: TotalsFile, gate: CommitGate) -> OverlongOutcome {
        let source = ShardName.display(name)
        let start = ContinuousClock.now
        guard gate.begin() else { return .abandoned }
        defer { gate.end() }
        do {
            guard let info = try spool.entry(name), info.kind == .regular else { return .vanished }
            let short = ShardName.shortened(name)
            var ordinal = 1
            while true {
                let instance = try instanceName(short, ordinal: ordinal, of: name)
                ordinal += 1
                if try failed.exists(instance) || work.exists(instance) || (done?.exists(instance) ?? false)
                    || output.exists(ShardName.summaryFile(instance)) {
                    continue
                }
                let recordName = ShardName.errorFile(instance)
                // nil: not written by this run (so counted by the totals rebuilt at start); false: written but not
                // counted (its directory fsync failed); true: written and counted.
                let earlier = overlongAttempts.withLock { $0[instance] }
                if try output.exists(recordName) {
                    guard let record = try? JSONValue.parse(utf8: output.readFile(recordName)), record["shard"]?.stringValue == source else {
                        continue  // another shard's record
                    }
                    if earlier == false, let time = record["failed_at"]?.stringValue {
                        try output.writeAtomically(recordName, bytes: try output.readFile(recordName))
                        totals.recordFailure(time: time, instance: instance)
                        overlongAttempts.withLock { $0[instance] = true }
                    }
                    return try moveOverlong(name, as: instance, source: source, size: info.size, totals: totals)
                }
                overlongAttempts.withLock { $0[instance] = false }
                let time = WallClock.iso8601(WallClock.now())
                let record = ErrorRecord(
                    WorkItem(source: source, instance: instance, size: info.size), kind: .nameTooLong, offset: nil,
                    reason: SpoolStore.overlongReason(source, instance: instance), time: time, seconds: (ContinuousClock.now - start).seconds,
                    compressedBytes: info.size)
                try output.writeAtomically(recordName, bytes: record.recordBytes)
                totals.recordFailure(time: time, instance: instance)
                overlongAttempts.withLock { $0[instance] = true }
                return try moveOverlong(name, as: instance, source: source, size: info.size, totals: totals)
            }
        } catch let error as FileSystemError {
            return .failed(ClaimFailure(error: error, identity: (try? spool.entry(name))?.identity))
        } catch {
            let error = FileSystemError(operation: "quarantine: \(error)", path: spool.display(name), errorNumber: EIO)
            return .failed(ClaimFailure(error: error, identity: (try? spool.entry(name))?.identity))
        }
    }

    /// The record's `reason`: the name's length, the limit, and where the file went.
    static func overlongReason(_ source: String, instance: String) -> String {
        "the shard name is \(source.utf8.count) bytes; smoothd accepts names of at most \(ShardName.maximumLength) bytes (escaped), "
            + "so that every file name it derives fits in 255 bytes; the file is kept as failed/\(instance)"
    }

    /// The last step of a quarantine: `spool/NAME` to `failed/INSTANCE`, made durable.
    private func moveOverlong(_ name: String, as instance: String, source: String, size: UInt64, totals: TotalsFile) throws -> OverlongOutcome {
        do {
            try spool.rename(name, to: failed, as: instance, replace: false)
        } catch {
            guard error.errorNumber == ENOENT else { throw error }
            // The producer removed it after the record was written: the record stands, as for any failed shard.
        }
        try failed.sync()
        try spool.sync()
        totals.commitFinished(instance)
        return .quarantined(WorkItem(source: source, instance: instance, size: size), compressedBytes: size)
    }
}
