import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline
import SmoothdRuns

/// The `kind` of an error record: the shard's own failure (a format rule, zstd, the file), or why the daemon
/// rejected it without a verdict of the pipeline.
enum RecordErrorKind: Sendable, Hashable, CustomStringConvertible {
    /// The pipeline's verdict.
    case shard(FailureKind)
    /// The shard cannot be opened for reading (`EACCES`/`EPERM`: owned by another user, mode 000 …), or reading
    /// it kept failing.
    case unreadable
    /// The file kept changing while it was read: a producer writing in place instead of renaming.
    case unstableFile
    /// The name is too long for the records derived from it (see ``ShardName/maximumLength``).
    case nameTooLong

    /// The kind as records write it (`truncated`, `io_error`, `unreadable`, …).
    var name: String {
        switch self {
        case .shard(let kind): return kind.name
        case .unreadable: return "unreadable"
        case .unstableFile: return "unstable_file"
        case .nameTooLong: return "name_too_long"
        }
    }

    /// `name`.
    var description: String { name }
}

/// `NAME.summary.json`: the `eval --json` shard entry (its `meta` replaced by `null` and a `meta_omitted` object
/// when it is larger or deeper than ``SummaryMeta`` allows, with `placement_meta` keeping the meta keys runs are
/// placed by), then `group` (as in `eval --json`), `instance` (when the name was reused), `processed_at`,
/// `processing_seconds` and the exact accumulator `state` that totals merge.
struct SummaryRecord: Sendable, JSONObjectEncodable {
    /// The `eval --json` entry (with `meta` removed when omitted).
    var entry: ShardEntry
    /// Why the producer's meta was left out, and its size in bytes.
    var metaOmitted: (reason: String, bytes: Int)?
    /// The meta keys the shard is placed by (group-by and run keys, `shard_index`, `num_shards`), kept when meta is
    /// omitted so that totals rebuilt at start place it again.
    var placementMeta: JSONValue?
    /// Its group key.
    var group: RunKey
    /// The record this one superseded (moved to `OUTPUT/superseded/`) and the identity they share; not written.
    var superseded: (instance: String, identity: ShardIdentity)?
    /// Its group's completeness when this record completed the group (for the log); not written.
    var completedGroup: Completeness?
    /// The name recorded under, when it differs from the shard's.
    var instance: String?
    /// When it was committed (ISO 8601, UTC).
    var processedAt: String
    /// Seconds from opening the shard to writing the record.
    var processingSeconds: Double

    /// The record of `summary` claimed as `item` and placed at `placement` under `groupBy`.
    init(_ summary: ShardSummary, item: WorkItem, placement: ShardPlacement, groupBy: GroupBy, options: MetricOptions, time: String, seconds: Double) {
        var kept = summary
        if let meta = summary.header.meta, let reason = SummaryMeta.reasonToOmit(meta) {
            kept.header.meta = nil
            metaOmitted = (reason, summary.header.metaLength)
            let keys = groupBy.runKeys + [ShardPlacement.indexKey, ShardPlacement.countKey]
            placementMeta = .object(keys.compactMap { key in meta[key].map { (key, $0) } })
        }
        group = placement.group
        entry = ShardEntry(kept, options: options)
        instance = item.instance != item.source ? item.instance : nil
        processedAt = time
        processingSeconds = seconds
    }

    /// The shard's metric state.
    var accumulator: MetricAccumulator { entry.summary.accumulator }

    /// The entry's members, then the daemon's.
    var jsonMembers: [(String, JSONValue)] {
        var members = entry.jsonMembers
        if let metaOmitted {
            members.append(("meta_omitted", .object([("reason", .string(metaOmitted.reason)), ("meta_bytes", .int(Int64(metaOmitted.bytes)))])))
        }
        if let placementMeta { members.append(("placement_meta", placementMeta)) }
        members.append(("group", group.json))
        if let instance { members.append(("instance", .string(instance))) }
        members += [("processed_at", .string(processedAt)), ("processing_seconds", .double(processingSeconds)), ("state", accumulator.jsonState())]
        return members
    }
}

/// `NAME.error.json`: the `eval --json` failure entry (`error` holds `kind`, `offset`, `reason`), then `instance`
/// (when the name was reused), `failed_at`, `processing_seconds` and `compressed_bytes`.
struct ErrorRecord: Sendable, JSONObjectEncodable {
    /// The shard as named in the spool (escaped when not printable).
    var shard: String
    /// What was wrong.
    var kind: RecordErrorKind
    /// Payload offset of the problem, when there is one.
    var offset: UInt64?
    /// Why, readably.
    var reason: String
    /// The name recorded under, when it differs from the shard's.
    var instance: String?
    /// When it was committed (ISO 8601, UTC).
    var failedAt: String
    /// Seconds from opening the shard to writing the record.
    var processingSeconds: Double
    /// Bytes of the zstd file.
    var compressedBytes: UInt64

    /// A record of `kind` for `item`.
    init(
        _ item: WorkItem, kind: RecordErrorKind, offset: UInt64?, reason: String, time: String, seconds: Double, compressedBytes: UInt64
    ) {
        shard = item.source
        self.kind = kind
        self.offset = offset
        self.reason = reason
        instance = item.instance != item.source ? item.instance : nil
        failedAt = time
        processingSeconds = seconds
        self.compressedBytes = compressedBytes
    }

    /// The record of the pipeline's `failure` of `item`.
    init(_ failure: ShardFailure, item: WorkItem, time: String, seconds: Double) {
        self.init(item, kind: .shard(failure.kind), offset: failure.offset, reason: failure.reason, time: time, seconds: seconds,
                  compressedBytes: failure.compressedBytes)
    }

    /// `shard`, `ok: false`, `error`, then the daemon's members.
    var jsonMembers: [(String, JSONValue)] {
        var members: [(String, JSONValue)] = [
            ("shard", .string(shard)), ("ok", .bool(false)),
            ("error", .object([
                ("kind", .string(kind.name)), ("offset", offset.map { .int(Int64(clamping: $0)) } ?? .null), ("reason", .string(reason)),
            ])),
        ]
        if let instance { members.append(("instance", .string(instance))) }
        members += [("failed_at", .string(failedAt)), ("processing_seconds", .double(processingSeconds)),
                    ("compressed_bytes", .int(Int64(clamping: compressedBytes)))]
        return members
    }
}

/// `totals.json`: the `eval --json` total of the ledger's shards, then `first_processed_at`, `last_processed_at` and
/// `groups`, the `eval --json` groups of the live summaries.
struct TotalsRecord: Sendable, JSONObjectEncodable {
    /// The total.
    var total: TotalReport
    /// The groups, in key order.
    var groups: [GroupReport]
    /// The earliest record time, if any.
    var firstProcessedAt: String?
    /// The latest record time, if any.
    var lastProcessedAt: String?

    /// The total's members, then the times.
    var jsonMembers: [(String, JSONValue)] {
        total.jsonMembers + [
            ("first_processed_at", firstProcessedAt.map { .string($0) } ?? .null),
            ("last_processed_at", lastProcessedAt.map { .string($0) } ?? .null),
            ("groups", .array(groups.map(\.json))),
        ]
    }
}

extension JSONObjectEncodable {
    /// The bytes of a record file: the object indented, and a final newline. The one encoding of every record.
    var recordBytes: [UInt8] {
        var bytes = json.serializedBytes(pretty: true)
        bytes.append(UInt8(ascii: "\n"))
        return bytes
    }
}
