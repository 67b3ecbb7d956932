import SmoothdJSON
import SmoothdResults

extension HTMLReport {
    /// The comparison section: the two groups, whether the replicates are paired and why, and per metric A, B, B − A
    /// and the 95 % interval of B − A (each cell also as `data-*`, the exact values `smoothd compare --json` prints).
    static func comparison(_ c: Comparison, to out: inout String) {
        let a = keyText(c.a.key.members), b = keyText(c.b.key.members)
        out += "<section id=\"comparison\" data-paired=\"\(c.paired)\"><h2>Comparison: B − A</h2>\n"
        out += "<p>A: \(HTMLText.escape(a)) (\(c.a.shards.count) shards); B: \(HTMLText.escape(b)) (\(c.b.shards.count) shards)</p>\n"
        out += "<p class=\"pairing\">\(c.paired ? "Paired" : "Unpaired"): \(HTMLText.escape(c.pairing))</p>\n"
        out += "<p>" + (c.replicates > 0 ? "\(c.replicates) bootstrap replicates; 95 % percentile intervals of B − A."
                                        : "No bootstrap replicates: intervals need --bootstrap R (when evaluating and here).") + "</p>\n"
        out += "<table class=\"comparison\"><thead><tr><th>metric</th><th>A</th><th>B</th><th>B − A</th><th>95 % interval</th></tr></thead><tbody>\n"
        for d in c.differences {
            let interval = d.bootstrapped ? (d.interval.map { "[\(HTMLText.metric($0.lower)), \(HTMLText.metric($0.upper))]" } ?? "–") : ""
            out += "<tr data-metric=\"\(HTMLText.escape(d.metric))\" data-difference=\"\(HTMLText.exact(d.difference))\""
                + " data-lower=\"\(HTMLText.exact(d.interval?.lower))\" data-upper=\"\(HTMLText.exact(d.interval?.upper))\">"
                + "<td>\(HTMLText.escape(d.metric))</td><td>\(HTMLText.metric(d.a))</td><td>\(HTMLText.metric(d.b))</td>"
                + "<td>\(HTMLText.metric(d.difference))</td><td>\(interval)</td></tr>\n"
        }
        out += "</tbody></table></section>\n"
    }
}
