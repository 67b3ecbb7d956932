import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline

/// Renders a ``ReportDocument`` as one self-contained HTML page: inline CSS and SVG, no script to run, nothing
/// fetched. Colours are the Okabe–Ito palette (distinguishable with every common colour-vision deficiency), and
/// every drawn value carries `data-*` attributes and an `aria-label`, so a browser test (or a screen reader) reads
/// the same numbers the picture shows.
public enum HTMLReport {
    /// The page for `document`.
    public static func render(_ document: ReportDocument) -> String {
        var out = ""
        out.reserveCapacity(64 * 1024 + document.groups.count * 24 * 1024)
        out += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        out += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        out += "<title>smoothd report</title>\n<style>\n\(stylesheet)</style>\n</head>\n<body>\n"
        header(document, to: &out)
        overview(document, to: &out)
        trends(document, to: &out)
        if let comparison = document.comparison { HTMLReport.comparison(comparison, to: &out) }
        if document.groups.count != 1 {
            // With one group the group is the total; otherwise the total gets its own table and diagram.
            let total = ReportDocument.Group(key: [], shards: document.shardsOK, step: nil, completeness: nil, metrics: document.total)
            section(total, id: "total", title: "Total over \(document.groups.count) groups", settings: document.settings, to: &out)
        }
        for (index, group) in document.groups.enumerated() {
            section(group, id: "group-\(index)", title: keyText(group.key), settings: document.settings, to: &out)
        }
        invalidShards(document, to: &out)
        let data = HTMLText.scriptSafe(document.data.serialized())
        out += "<script type=\"application/json\" id=\"smoothd-data\">\(data)</script>\n</body>\n</html>\n"
        return out
    }

    // MARK: Sections

    private static func header(_ d: ReportDocument, to out: inout String) {
        let s = d.settings
        out += "<header>\n<h1>smoothd report</h1>\n"
        let inputs = d.inputs.count <= 6 ? d.inputs.joined(separator: ", ")
            : d.inputs.prefix(5).joined(separator: ", ") + " and \(d.inputs.count - 5) more"
        out += "<p class=\"what\">Evaluated: <span id=\"inputs\">\(HTMLText.escape(inputs.isEmpty ? "(no inputs)" : inputs))</span></p>\n"
        out += "<p class=\"when\">Generated <time id=\"generated-at\" datetime=\"\(HTMLText.escape(d.generatedAt))\">\(HTMLText.escape(d.generatedAt))</time></p>\n"
        let extra = s.reportSmoothing.filter { $0 != s.smoothing }.map(\.description)
        out += "<p class=\"options\" id=\"options\" data-smoothing=\"\(HTMLText.exact(s.smoothing))\" data-mode=\"\(s.mode.rawValue)\""
            + " data-top-k=\"\(s.topK)\" data-ece-bins=\"\(s.eceBins)\">Options: label smoothing ε = \(s.smoothing.description)"
            + " (\(s.mode.rawValue)), top-\(s.topK) accuracy, \(s.eceBins) confidence bins"
            + (extra.isEmpty ? "" : "; losses also at ε = " + HTMLText.escape(extra.joined(separator: ", "))) + "</p>\n"
        out += "<p class=\"counts\">\(d.shardsOK) valid shard\(d.shardsOK == 1 ? "" : "s"), \(d.shardsFailed) invalid, "
            + "\(d.groups.count) group\(d.groups.count == 1 ? "" : "s"), \(d.total.countedRows) rows counted</p>\n"
        for note in d.notes { out += "<p class=\"note\">\(HTMLText.escape(note))</p>\n" }
        out += "</header>\n"
    }

    private static func overview(_ d: ReportDocument, to out: inout String) {
        guard d.groups.count > 1 else { return }
        out += "<section id=\"overview\"><h2>Groups</h2>\n<table class=\"overview\"><thead><tr><th>group</th><th>shards</th>"
            + "<th>complete</th><th>rows counted</th><th>loss (nats)</th><th>accuracy</th><th>top-\(d.settings.topK)</th><th>ECE</th></tr></thead><tbody>\n"
        for (i, g) in d.groups.enumerated() {
            let m = g.metrics, v = m.values
            out += "<tr><td><a href=\"#group-\(i)\">\(HTMLText.escape(keyText(g.key)))</a></td><td>\(g.shards)</td>"
                + "<td>\(g.completeness.map { "\($0.present)/\($0.expected)" } ?? "–")</td><td>\(m.countedRows)</td>"
                + "<td>\(HTMLText.metric(v.loss))</td><td>\(HTMLText.metric(v.accuracy))</td><td>\(HTMLText.metric(v.topKAccuracy))</td>"
                + "<td>\(HTMLText.metric(v.ece))</td></tr>\n"
        }
        out += "</tbody></table></section>\n"
    }

    private static func section(_ g: ReportDocument.Group, id: String, title: String, settings: MetricOptions, to out: inout String) {
        let kind = id == "total" ? "total" : "group"
        out += "<section class=\"\(kind)\" id=\"\(id)\" data-key=\"\(HTMLText.escape(JSONValue.object(g.key).serialized()))\">\n"
        out += "<h2>\(HTMLText.escape(title))</h2>\n<div class=\"panels\">\n"
        metricTable(g, settings: settings, id: id, to: &out)
        ReliabilityDiagram.draw(g.metrics, title: title, id: id, to: &out)
        out += "</div>\n</section>\n"
    }

    private static func metricTable(_ g: ReportDocument.Group, settings: MetricOptions, id: String, to out: inout String) {
        let m = g.metrics, v = m.values
        // With bootstrap replicates, the value and its 95 % interval.
        func withInterval(_ value: Double?, _ metric: BootstrapMetric) -> String {
            guard let intervals = m.intervals else { return HTMLText.metric(value) }
            let bounds = intervals[metric].map { "[\(HTMLText.metric($0.lower)), \(HTMLText.metric($0.upper))]" } ?? "[–]"
            return HTMLText.metric(value) + " " + bounds
        }
        var rows: [(String, String)] = [("shards", String(g.shards))]
        if let c = g.completeness {
            let missing = c.missing.isEmpty ? "complete" : "missing " + c.missing.prefix(20).joined(separator: ", ") + (c.missing.count > 20 ? ", …" : "")
            rows.append(("ranks present", "\(c.present) of \(c.expected) (\(missing))"))
        }
        rows += [("rows read", String(m.rows)), ("rows counted", String(m.countedRows)), ("ignored rows", String(m.ignoredRows)),
                 ("non-finite rows", String(m.nonfiniteRows)),
                 ("loss, ε = \(settings.smoothing.description) \(settings.mode.rawValue) (nats)", withInterval(v.loss, .loss))]
        for (e, loss) in v.lossesBySmoothing.dropFirst() { rows.append(("loss, ε = \(e) (nats)", HTMLText.metric(loss))) }
        rows += [("NLL (nats)", withInterval(v.nll, .nll)), ("perplexity", HTMLText.metric(v.perplexity)),
                 ("accuracy", withInterval(v.accuracy, .accuracy)), ("top-\(settings.topK) accuracy", withInterval(v.topKAccuracy, .topKAccuracy)),
                 ("mean confidence", HTMLText.metric(v.meanConfidence)), ("entropy (nats)", HTMLText.metric(v.entropy)),
                 ("Brier score", HTMLText.metric(v.brier)), ("ECE", withInterval(v.ece, .ece)), ("adaptive ECE", HTMLText.metric(v.adaptiveECE)),
                 ("MCE", HTMLText.metric(v.mce))]
        out += "<table class=\"metrics\" id=\"\(id)-metrics\"><tbody>\n"
        for (name, value) in rows {
            let warn = name == "non-finite rows" && m.nonfiniteRows > 0 ? " class=\"warn\"" : ""
            out += "<tr\(warn)><th>\(HTMLText.escape(name))</th><td>\(HTMLText.escape(value))</td></tr>\n"
        }
        out += "</tbody></table>\n"
        temperatureTable(m, id: id, to: &out)
    }

    private static func trends(_ d: ReportDocument, to out: inout String) {
        let families = TrendFamily.families(of: d.groups)
        guard !families.isEmpty else { return }
        out += "<section id=\"trends\"><h2>Checkpoint trends</h2>\n"
        for (i, family) in families.enumerated() {
            TrendChart.draw(family, topK: d.settings.topK, id: "trend-\(i)", to: &out)
        }
        out += "</section>\n"
    }

    private static func invalidShards(_ d: ReportDocument, to out: inout String) {
        guard !d.invalid.isEmpty else { return }
        out += "<section id=\"invalid\"><h2>Invalid shards (\(d.invalid.count))</h2>\n"
            + "<table class=\"invalid\"><thead><tr><th>shard</th><th>error</th><th>payload offset</th><th>reason</th></tr></thead><tbody>\n"
        for shard in d.invalid {
            out += "<tr class=\"invalid-shard\" data-kind=\"\(HTMLText.escape(shard.kind))\" data-offset=\"\(shard.offset.map(String.init) ?? "")\">"
                + "<td>\(HTMLText.escape(shard.shard))</td><td>\(HTMLText.escape(shard.kind))</td>"
                + "<td>\(shard.offset.map(String.init) ?? "–")</td><td>\(HTMLText.escape(shard.reason))</td></tr>\n"
        }
        out += "</tbody></table></section>\n"
    }

    /// `model=lm-a, checkpoint=100, split=validation`; `all shards` for the key of `--group-by none`.
    static func keyText(_ key: [(String, JSONValue)]) -> String {
        guard !key.isEmpty else { return "all shards" }
        return key.map { "\($0.0)=\(valueText($0.1))" }.joined(separator: ", ")
    }

    /// A key value as people write it: strings without quotes, `null` for absent.
    static func valueText(_ value: JSONValue) -> String {
        value.stringValue ?? value.serialized()
    }

    /// Okabe–Ito colours, print rules and a layout that holds two panels side by side at 1280 px.
    static let stylesheet = """
        :root { --black:#000; --orange:#E69F00; --sky:#56B4E9; --green:#009E73; --yellow:#F0E442; --blue:#0072B2;
          --vermillion:#D55E00; --purple:#CC79A7; --grey:#6b6b6b; }
        body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color:#111;
          margin: 0 auto; padding: 16px 20px; max-width: 1240px; }
        h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 18px 0 6px; }
        header p { margin: 2px 0; } .note { color: var(--vermillion); }
        table { border-collapse: collapse; } th, td { padding: 2px 8px; text-align: left; vertical-align: top; }
        td { font-variant-numeric: tabular-nums; }
        table.metrics th { font-weight: normal; color: #333; } table.metrics td { text-align: right; }
        table.overview, table.invalid { width: 100%; } table.overview td, table.invalid td { border-top: 1px solid #ddd; }
        tr.warn td, tr.warn th { color: var(--vermillion); font-weight: bold; }
        .panels { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
        .group, .total { border-top: 2px solid #ccc; padding-top: 4px; }
        .trend-family { margin-bottom: 12px; } .trend-row { display: flex; flex-wrap: wrap; gap: 6px; }
        svg { font: 11px system-ui, "DejaVu Sans", sans-serif; } svg text { fill: #111; }
        .axis { stroke: #333; stroke-width: 1; fill: none; } .grid { stroke: #ddd; stroke-width: 1; }
        .hist-bar { fill: var(--sky); stroke: #2f7fae; stroke-width: .5; }
        .acc-bar, .swatch-acc { fill: var(--blue); }
        .gap, .swatch-gap { fill: var(--vermillion); fill-opacity: .45; stroke: var(--vermillion); stroke-width: 1; }
        .diagonal, .swatch-diagonal { stroke: var(--black); stroke-dasharray: 4 3; stroke-width: 1.2; }
        .conf-mark, .swatch-conf { stroke: var(--orange); stroke-width: 2.5; }
        .trend-line { fill: none; stroke: var(--green); stroke-width: 1.8; } .trend-point { fill: var(--green); }
        .calibration { font-size: 13px; font-weight: bold; }
        @media print {
          body { max-width: none; padding: 0; font-size: 11px; color: #000; }
          a { color: inherit; text-decoration: none; }
          .group, .total, .trend-family, table.overview tr, table.invalid tr { break-inside: avoid; page-break-inside: avoid; }
          .panels { gap: 12px; } #overview { break-after: page; }
        }

        """
}
