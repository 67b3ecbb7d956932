import SmoothdJSON
import SmoothdMetrics
import SmoothdReport
import Synchronization

/// What `GET /` and `GET /totals.json` answer: the HTML report of the current totals and the `totals.json` record,
/// made at most once per `interval` (time passed in) and shared by every request meanwhile, so a client polling
/// fast costs one render a second. The page shows at most `maxGroups` groups, the most recently updated ones.
///
/// `Sendable`: the cache and the totals it reads are only reached through `state`'s `Mutex`.
final class LiveReport: Sendable {
    /// One rendering and when it was made.
    struct Rendered: Sendable {
        /// The page.
        var html: [UInt8]
        /// The `totals.json` bytes it was drawn from.
        var totals: [UInt8]
        /// When it was made (seconds since the epoch).
        var time: Double
    }

    private struct State {
        var totals: TotalsFile?
        var cache: Rendered?
    }

    private let state = Mutex(State())
    private let options: MetricOptions
    private let output: String
    private let interval: Double
    private let maxGroups: Int

    /// A provider for the daemon writing to `output`; nothing is served until ``attach(_:)``.
    init(options: MetricOptions, output: String, interval: Double = 1, maxGroups: Int = 100) {
        self.options = options
        self.output = output
        self.interval = interval
        self.maxGroups = maxGroups
    }

    /// Serves the totals of `totals` from now on (they exist only once the output directory is reconciled).
    func attach(_ totals: TotalsFile) {
        state.withLock { $0.totals = totals }
    }

    /// The rendering current at `now`: the cached one when younger than the interval, else a new one; nil before
    /// ``attach(_:)``.
    func current(now: Double) -> Rendered? {
        state.withLock { state -> Rendered? in
            if let cache = state.cache, now - cache.time < interval, now >= cache.time { return cache }
            guard let totals = state.totals else { return nil }
            let ledger = totals.snapshot
            let record = ledger.record(options: options)
            // The record lists the groups in this same order.
            let updated = ledger.runs.groups().groups.map(\.updated)
            let rendered = render(record.json, updated: updated, bytes: record.recordBytes, now: now)
            state.cache = rendered
            return rendered
        }
    }

    /// The page of a `totals.json` record: its groups (the `maxGroups` most recently updated, by `updated`, when
    /// there are more) and its total.
    private func render(_ record: JSONValue, updated: [Double], bytes: [UInt8], now: Double) -> Rendered {
        var groups = record["groups"]?.arrayValue ?? []
        var notes = ["Live page of smoothd serve: the totals at \(WallClock.iso8601(now)), redrawn at most once a second (reload to update)."]
        if groups.count > maxGroups, updated.count == groups.count {
            // The most recently updated ones, shown in key order; ties go to the earlier key.
            let order = groups.indices.sorted { a, b in updated[a] > updated[b] || (updated[a] == updated[b] && a < b) }
            let kept = Set(order.prefix(maxGroups))
            notes.append("Showing the \(maxGroups) most recently updated of \(groups.count) groups; /totals.json has them all.")
            groups = groups.indices.filter(kept.contains).map { groups[$0] }
        }
        let total = JSONValue.object((record.objectMembers ?? []).filter { $0.0 != "groups" })
        let document = JSONValue.object([("inputs", .array([.string(output)])), ("groups", .array(groups)), ("total", total)])
        let html: String
        do {
            html = HTMLReport.render(try ReportDocument(document: document, generatedAt: WallClock.iso8601(now), notes: notes))
        } catch {
            // Only a totals record of another schema gets here; say so rather than serve a broken page.
            html = "<!DOCTYPE html><html lang=\"en\"><meta charset=\"utf-8\"><title>smoothd</title><p>The totals cannot be drawn: \(error)</p></html>"
        }
        return Rendered(html: Array(html.utf8), totals: bytes, time: now)
    }
}
