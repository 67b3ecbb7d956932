/// Unfinished spool entries (a name starting with `.` or ending in `.tmp` or `.part`: a producer still writing, or
/// one that died before its rename) older than `--stale-partial-seconds`. Each is reported once while it stays;
/// nothing is ever done to the file. A single-owner value with time passed in.
struct StalePartials: Sendable {
    /// An unfinished regular file seen by a scan.
    struct Entry: Sendable, Equatable {
        /// Its name in the spool (a plain name or an escaped key).
        var name: String
        /// Its size in bytes.
        var size: UInt64
        /// Its modification time, seconds since the epoch.
        var modified: Double
    }

    /// A newly stale entry and its age when noticed.
    struct Report: Sendable, Equatable {
        /// The entry.
        var entry: Entry
        /// Seconds since its last modification.
        var age: Double
    }

    /// Age from which an unfinished file is stale.
    let threshold: Double
    /// The stale names reported so far that are still there.
    private var reported: Set<String> = []

    /// How many are stale now.
    var count: Int { reported.count }

    /// Tracks entries older than `threshold` seconds.
    init(threshold: Double) {
        self.threshold = threshold
    }

    /// Takes in the unfinished entries a scan found at `now`: returns those that became stale since the last scan
    /// (to log) and how many are stale now. An entry that is gone is forgotten (if it comes back, it is new).
    mutating func observe(_ entries: [Entry], now: Double) -> (newlyStale: [Report], stale: Int) {
        var stale: Set<String> = []
        var newly: [Report] = []
        for entry in entries where now - entry.modified >= threshold {
            stale.insert(entry.name)
            if !reported.contains(entry.name) { newly.append(Report(entry: entry, age: now - entry.modified)) }
        }
        reported = stale
        return (newly, stale.count)
    }
}
