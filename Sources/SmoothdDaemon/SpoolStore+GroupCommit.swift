import SmoothdRuns

/// Where ``SpoolStore/prepare(_:evaluator:options:totals:gate:attempts:failOnNonfinite:)`` left a shard.
enum ProcessStep: Sendable {
    /// Nothing (more) to commit: this is how it ended.
    case finished(ClaimDisposition)
    /// A record to commit, written under its temporary name; the commit gate is held until it is committed.
    case commit(PreparedCommit)
}

/// A record written under its temporary name and not yet durable, waiting for its group commit
/// (``SpoolStore/commitBatch(_:)``). Holds the commit gate (begun once), which the group commit ends.
struct PreparedCommit: Sendable {
    /// The record to commit.
    enum Record: Sendable {
        /// A summary and the placement it is merged under.
        case summary(SummaryRecord, ShardPlacement)
        /// An error record: the shard goes to `failed/`.
        case error(ErrorRecord)
    }

    /// The claimed shard.
    let item: WorkItem
    /// Its record.
    let record: Record
    /// The record's bytes under their temporary name in the output directory (still open).
    let file: StagedFile
    /// The totals it is counted in.
    let totals: TotalsFile
    /// The gate it holds.
    let gate: CommitGate
    /// When processing the shard began (for `processing_seconds` and the duration metric).
    let start: ContinuousClock.Instant

    /// Whether it is a summary (the shard goes to `done/`) rather than an error record.
    var succeeded: Bool {
        if case .summary = record { return true }
        return false
    }
}

/// The steps of a group commit, after which a test can stop one dead (``FaultInjector/crash(after:)``).
enum GroupCommitStep: Sendable, Equatable, CaseIterable {
    /// Every record's temporary file `fsync`ed (and closed).
    case recordsSynced
    /// The claims `fsync`ed and the records renamed into place (not yet durable).
    case recordsInstalled
    /// The output directory `fsync`ed: the records are durable.
    case recordsDurable
    /// The records counted and `totals.json` rewritten (its rename not yet durable).
    case totalsWritten
    /// The shards renamed out of the work directory (not yet durable).
    case shardsMoved
}

extension SpoolStore {
    /// Commits a batch of prepared records, all counted in the same totals, with one `fsync` per record file and
    /// one of each directory for the whole batch (a commit of one shard took six to eight before):
    ///
    /// 1. each record's temporary file is `fsync`ed (their writeback was started when they were written, so these
    ///    share a journal commit);
    /// 2. the work directory and the spool are `fsync`ed, so every claim is durable before a record that refers to
    ///    it can be; the records are renamed into place and the output directory is `fsync`ed once: the records are
    ///    durable;
    /// 3. only then are they counted (the ledger, which `/metrics` and the live report show) and `totals.json`
    ///    rewritten once; a superseded summary moves to `superseded/` (after the record replacing it is durable);
    /// 4. the shards are renamed to `done/` (or unlinked) or `failed/`, and `done/`, `failed/`, the work directory
    ///    and the output directory (the rename of `totals.json`) are `fsync`ed once each;
    /// 5. only now are the results returned, and so logged and counted in the metrics.
    ///
    /// A failure of one record's write (`fsync`, rename) makes that shard a ``ClaimDisposition/retry(_:_:)`` and
    /// the others go on; a failed directory `fsync` makes every shard still in the batch a retry, whose next
    /// attempt finds its record and finishes (``adoptRecord(_:succeeded:totals:)`` rewrites and counts a record
    /// not counted yet). What a crash between any two steps leaves, and how the next start finishes it, is in
    /// docs/HARDENING-daemon.md ("Group commit"). Blocking; the caller ends the commit gates.
    func commitBatch(_ batch: [PreparedCommit]) -> [ClaimDisposition] {
        guard let totals = batch.first?.totals else { return [] }
        precondition(batch.allSatisfy { $0.totals === totals }, "one batch, one totals")
        var results = [ClaimDisposition?](repeating: nil, count: batch.count)
        var live: [Int] = []
        func retry(_ indices: [Int], _ error: any Error) {
            for i in indices { results[i] = .retry(batch[i].item, "\(error)") }
        }
        /// Runs `step` on every shard still in the batch; a shard whose step fails leaves the batch as a retry.
        func each(_ step: (Int) throws -> Void) {
            live = live.filter { i in
                do {
                    try step(i)
                    return true
                } catch {
                    retry([i], error)
                    return false
                }
            }
        }
        func crashed(after step: GroupCommitStep) -> Bool {
            guard let faults, faults.crashes(after: step) else { return false }
            for i in batch.indices where results[i] == nil { results[i] = .abandoned(batch[i].item) }
            return true
        }

        // 1. The records' data.
        live = Array(batch.indices)
        each { try batch[$0].file.finish(durable: true) }
        if crashed(after: .recordsSynced) { return results.map { $0! } }

        // 2. The claims, then the records in place, durable.
        do {
            try work.sync()
            try spool.sync()
        } catch {
            for i in live { batch[i].file.remove() }
            retry(live, error)
            live = []
        }
        each { try batch[$0].file.install() }
        if crashed(after: .recordsInstalled) { return results.map { $0! } }
        if !live.isEmpty {
            do {
                try output.sync()
            } catch {
                retry(live, error)
                live = []
            }
        }
        if crashed(after: .recordsDurable) { return results.map { $0! } }

        // 3. Counted, one totals.json for the batch.
        let changes = live.map { i -> TotalsFile.Change in
            let item = batch[i].item
            switch batch[i].record {
            case .summary(let record, let placement):
                return .success(record.entry.summary.accumulator, placement: placement, time: record.processedAt,
                                file: ShardName.summaryFile(item.instance), instance: item.instance)
            case .error(let record):
                return .failure(time: record.failedAt, instance: item.instance)
            }
        }
        let merged = live.isEmpty ? [] : totals.record(changes, syncDirectory: false)
        if crashed(after: .totalsWritten) { return results.map { $0! } }
        var summaries: [Int: SummaryRecord] = [:]
        live = zip(live, merged).compactMap { i, merged in
            guard case .summary(var record, let placement) = batch[i].record else { return i }
            record.completedGroup = merged.completed
            if let old = merged.superseded {
                do {
                    try moveSuperseded(old.name)
                } catch {
                    retry([i], error)
                    return nil
                }
                record.superseded = (old.name, placement.identity)
            }
            summaries[i] = record
            return i
        }

        // 4. The shards out of the work directory.
        each { try moveOut(batch[$0].item, succeeded: batch[$0].succeeded) }
        if crashed(after: .shardsMoved) { return results.map { $0! } }
        if !live.isEmpty {
            do {
                if live.contains(where: { batch[$0].succeeded }) { try done?.sync() }
                if live.contains(where: { !batch[$0].succeeded }) { try failed.sync() }
                try work.sync()
                try output.sync()
            } catch {
                retry(live, error)
                live = []
            }
        }

        // 5. Durable: report.
        let now = ContinuousClock.now
        for i in live {
            let item = batch[i].item
            totals.commitFinished(item.instance)
            switch batch[i].record {
            case .summary:
                results[i] = .succeeded(item, summaries[i]!, seconds: (now - batch[i].start).seconds)
            case .error(let record):
                results[i] = .failed(item, record)
            }
        }
        return results.map { $0! }
    }
}
