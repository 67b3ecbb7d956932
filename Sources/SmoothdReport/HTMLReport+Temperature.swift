import SmoothdMetrics
import SmoothdPipeline

extension HTMLReport {
    /// The temperature table of a group or the total: one row per T, then the best T.
    static func temperatureTable(_ m: MetricReport, id: String, to out: inout String) {
        let v = m.values
        guard !v.byTemperature.isEmpty else { return }
        out += "<table class=\"temperatures\" id=\"\(id)-temperatures\"><thead><tr><th>T</th><th>NLL</th><th>loss</th>"
            + "<th>mean confidence</th><th>ECE</th><th>MCE</th><th>Brier</th><th>entropy</th></tr></thead><tbody>\n"
        for row in v.byTemperature {
            let cells = [row.nll, row.loss, row.meanConfidence, row.ece, row.mce, row.brier, row.entropy].map { "<td>\(HTMLText.escape(HTMLText.metric($0)))</td>" }
            out += "<tr><th>\(HTMLText.escape(ShardReport.temperatureKey(row.temperature)))</th>" + cells.joined() + "</tr>\n"
        }
        if let best = v.bestTemperature {
            let note = best.withinGrid ? "best T" : "best T (outside the grid: extrapolated)"
            out += "<tr class=\"best\"><th>\(HTMLText.escape(note)) = \(HTMLText.escape(HTMLText.metric(best.temperature)))</th>"
                + "<td>\(HTMLText.escape(HTMLText.metric(best.nll)))</td><td></td><td></td>"
                + "<td>\(HTMLText.escape(HTMLText.metric(best.ece))) (interpolated)</td><td></td><td></td><td></td></tr>\n"
        }
        out += "</tbody></table>\n"
    }
}
