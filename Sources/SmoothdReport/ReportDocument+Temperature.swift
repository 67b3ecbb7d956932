import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline

extension ReportDocument {
    /// `best_temperature`.
    public struct BestTemperatureRow: Sendable {
        /// T*.
        public var temperature: Double
        /// Mean nll at T* (nats).
        public var nll: Double
        /// ECE at T* (interpolated between grid points).
        public var ece: Double
        /// False when T* lies outside the grid (one Newton step from its edge).
        public var withinGrid: Bool
    }

    /// The rows of `by_temperature` in `object` (none when absent).
    static func temperatureRows(_ object: JSONValue, in place: String) throws(ReportInputError) -> [TemperatureValues] {
        guard let sweep = object["by_temperature"] else { return [] }
        guard let members = sweep.objectMembers else { throw ReportInputError("\(place).by_temperature is not an object") }
        var rows: [TemperatureValues] = []
        for (key, values) in members {
            guard let t = Double(key), t > 0 else { throw ReportInputError("\(place).by_temperature: key '\(key)' is not a temperature") }
            func number(_ name: String) throws(ReportInputError) -> Double? {
                guard let v = values[name] else { throw ReportInputError("\(place).by_temperature.\(key).\(name) is missing") }
                if v == .null { return nil }
                guard let d = v.doubleValue else { throw ReportInputError("\(place).by_temperature.\(key).\(name) is not a number") }
                return d
            }
            var row = TemperatureValues(temperature: t)
            (row.nll, row.loss, row.meanConfidence) = (try number("nll"), try number("loss"), try number("mean_confidence"))
            (row.ece, row.mce, row.brier, row.entropy) = (try number("ece"), try number("mce"), try number("brier"), try number("entropy"))
            rows.append(row)
        }
        return rows
    }

    /// `best_temperature` in `object` (nil when absent or null).
    static func bestTemperature(_ object: JSONValue, in place: String) throws(ReportInputError) -> BestTemperatureRow? {
        guard let best = object["best_temperature"], best != .null else { return nil }
        guard let t = best["temperature"]?.doubleValue, let nll = best["nll"]?.doubleValue, let ece = best["ece"]?.doubleValue else {
            throw ReportInputError("\(place).best_temperature needs numbers temperature, nll and ece")
        }
        return BestTemperatureRow(temperature: t, nll: nll, ece: ece, withinGrid: best["within_grid"]?.boolValue ?? true)
    }
}

extension HTMLReport {
    /// The temperature table of a group or the total: one row per T, then the best T.
    static func temperatureTable(_ m: ReportDocument.Metrics, id: String, to out: inout String) {
        guard !m.byTemperature.isEmpty else { return }
        out += "<table class=\"temperatures\" id=\"\(id)-temperatures\"><thead><tr><th>T</th><th>NLL</th><th>loss</th>"
            + "<th>mean confidence</th><th>ECE</th><th>MCE</th><th>Brier</th><th>entropy</th></tr></thead><tbody>\n"
        for row in m.byTemperature {
            let cells = [row.nll, row.loss, row.meanConfidence, row.ece, row.mce, row.brier, row.entropy].map { "<td>\(HTMLText.escape(HTMLText.metric($0)))</td>" }
            out += "<tr><th>\(HTMLText.escape(ShardReport.temperatureKey(row.temperature)))</th>" + cells.joined() + "</tr>\n"
        }
        if let best = m.bestTemperature {
            let note = best.withinGrid ? "best T" : "best T (outside the grid: extrapolated)"
            out += "<tr class=\"best\"><th>\(HTMLText.escape(note)) = \(HTMLText.escape(HTMLText.metric(best.temperature)))</th>"
                + "<td>\(HTMLText.escape(HTMLText.metric(best.nll)))</td><td></td><td></td>"
                + "<td>\(HTMLText.escape(HTMLText.metric(best.ece))) (interpolated)</td><td></td><td></td><td></td></tr>\n"
        }
        out += "</tbody></table>\n"
    }
}
