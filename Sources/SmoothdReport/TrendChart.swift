import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline

/// The checkpoints of one (model, split) — every group-by key but `checkpoint` — in trend order.
struct TrendFamily {
    /// The shared key members (every key but `checkpoint`).
    var key: [(String, JSONValue)]
    /// The groups, ordered by numeric `step`, then (for those without one) by natural order of the checkpoint name.
    var points: [(checkpoint: String, group: ReportDocument.Group)]
    /// Whether every point has a step (the x axis then says so).
    var byStep: Bool

    /// Families of two or more checkpoints, in order of first appearance. Groups without a checkpoint are not trends.
    static func families(of groups: [ReportDocument.Group]) -> [TrendFamily] {
        var order: [String] = []
        var members: [String: (key: [(String, JSONValue)], points: [(String, ReportDocument.Group)])] = [:]
        for group in groups {
            guard let checkpoint = group.key.first(where: { $0.0 == "checkpoint" })?.1, checkpoint != .null else { continue }
            let rest = group.key.filter { $0.0 != "checkpoint" }
            let id = JSONValue.object(rest).serialized()
            if members[id] == nil {
                order.append(id)
                members[id] = (rest, [])
            }
            members[id]!.points.append((HTMLReport.valueText(checkpoint), group))
        }
        return order.compactMap { id in
            let family = members[id]!
            guard family.points.count >= 2 else { return nil }
            let sorted = family.points.sorted { a, b in
                switch (a.1.step, b.1.step) {
                case (let x?, let y?) where x != y: return x < y
                case (.some, nil): return true
                case (nil, .some): return false
                default: return HTMLText.naturalLess(a.0, b.0)
                }
            }
            return TrendFamily(key: family.key, points: sorted.map { (checkpoint: $0.0, group: $0.1) },
                               byStep: sorted.allSatisfy { $0.1.step != nil })
        }
    }
}

/// Small multiples of one family: loss, NLL, accuracy, top-k accuracy and ECE across its checkpoints.
enum TrendChart {
    static let width = 236.0, height = 190.0
    static let left = 52.0, right = 10.0, top = 24.0, bottom = 136.0

    /// Appends the family's charts. Each point is a `.trend-point` with `data-metric`, `data-order` (its place in
    /// trend order), `data-checkpoint`, `data-step` and `data-value`.
    static func draw(_ family: TrendFamily, topK: Int, id: String, to out: inout String) {
        let name = family.key.isEmpty ? "all groups" : HTMLReport.keyText(family.key)
        out += "<div class=\"trend-family\" id=\"\(id)\" data-key=\"\(HTMLText.escape(JSONValue.object(family.key).serialized()))\">\n"
            + "<h3>\(HTMLText.escape(name)): \(family.points.count) checkpoints</h3>\n<div class=\"trend-row\">\n"
        let metrics: [(String, String, (MetricValues) -> Double?)] = [
            ("loss", "loss (nats)", \.loss), ("nll", "NLL (nats)", \.nll), ("accuracy", "accuracy (fraction)", \.accuracy),
            ("top_k_accuracy", "top-\(topK) accuracy (fraction)", \.topKAccuracy), ("ece", "ECE (fraction)", \.ece),
        ]
        for (metric, label, value) in metrics {
            chart(family, metric: metric, label: label, value: value, id: "\(id)-\(metric)", to: &out)
        }
        out += "</div>\n</div>\n"
    }

    private static func chart(_ family: TrendFamily, metric: String, label: String, value: (MetricValues) -> Double?,
                              id: String, to out: inout String) {
        let values = family.points.map { value($0.group.metrics.values).flatMap { $0.isFinite ? $0 : nil } }
        let present = values.compactMap { $0 }
        var lo = present.min() ?? 0, hi = present.max() ?? 1
        if hi - lo < 1e-12 { lo -= max(abs(lo) * 0.05, 0.005); hi += max(abs(hi) * 0.05, 0.005) }
        let pad = (hi - lo) * 0.08
        lo -= pad
        hi += pad
        let n = family.points.count
        let plotWidth = width - left - right
        // Points inset from the axes so the first and last checkpoint names fit.
        let inset = 22.0
        let x = { (i: Int) in left + inset + (n == 1 ? 0 : (plotWidth - 2 * inset) * Double(i) / Double(n - 1)) }
        let y = { (v: Double) in bottom - (v - lo) / (hi - lo) * (bottom - top) }
        out += "<svg class=\"trend\" id=\"\(id)\" data-metric=\"\(metric)\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\""
            + " role=\"img\" aria-label=\"\(HTMLText.escape(label)) by checkpoint\" xmlns=\"http://www.w3.org/2000/svg\">\n"
        out += "<text x=\"\(left)\" y=\"14\" font-weight=\"bold\">\(HTMLText.escape(label))</text>\n"
        for t in [lo + pad, (lo + hi) / 2, hi - pad] {
            out += "<line class=\"grid\" x1=\"\(left)\" y1=\"\(HTMLText.px(y(t)))\" x2=\"\(width - right)\" y2=\"\(HTMLText.px(y(t)))\"/>"
                + "<text x=\"\(left - 4)\" y=\"\(HTMLText.px(y(t) + 4))\" text-anchor=\"end\">\(tick(t, span: hi - lo))</text>\n"
        }
        out += "<line class=\"axis\" x1=\"\(left)\" y1=\"\(bottom)\" x2=\"\(width - right)\" y2=\"\(bottom)\"/>"
            + "<line class=\"axis\" x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(bottom)\"/>\n"
        var path = ""
        for (i, v) in values.enumerated() {
            guard let v else { continue }
            path += (path.isEmpty ? "M" : " L") + "\(HTMLText.px(x(i))) \(HTMLText.px(y(v)))"
        }
        if !path.isEmpty { out += "<path class=\"trend-line\" d=\"\(path)\"/>\n" }
        let every = max(1, (n + 5) / 6)  // at most ~6 tick labels
        for (i, point) in family.points.enumerated() {
            if i % every == 0 || i == n - 1 {
                let text = point.checkpoint.count > 12 ? String(point.checkpoint.prefix(11)) + "…" : point.checkpoint
                out += "<text x=\"\(HTMLText.px(x(i)))\" y=\"\(bottom + 13)\" text-anchor=\"middle\">\(HTMLText.escape(text))</text>\n"
            }
            guard let v = values[i] else { continue }
            let step = point.group.step.map(HTMLText.exact) ?? ""
            out += "<circle class=\"trend-point\" data-metric=\"\(metric)\" data-order=\"\(i)\" data-checkpoint=\"\(HTMLText.escape(point.checkpoint))\""
                + " data-step=\"\(step)\" data-value=\"\(HTMLText.exact(v))\" cx=\"\(HTMLText.px(x(i)))\" cy=\"\(HTMLText.px(y(v)))\" r=\"3.5\""
                + " aria-label=\"\(HTMLText.escape(point.checkpoint))\(step.isEmpty ? "" : " (step \(step))"): \(HTMLText.metric(v))\">"
                + "<title>\(HTMLText.escape(point.checkpoint)): \(HTMLText.metric(v))</title></circle>\n"
        }
        out += "<text x=\"\(left + plotWidth / 2)\" y=\"\(bottom + 30)\" text-anchor=\"middle\">checkpoint (\(family.byStep ? "ordered by step" : "natural order"))</text>\n"
        out += "</svg>\n"
    }

    /// A tick label with enough decimals for the axis span.
    private static func tick(_ v: Double, span: Double) -> String {
        span >= 10 ? HTMLText.fixed(v, 1) : span >= 0.1 ? HTMLText.fixed(v, 2) : span >= 0.001 ? HTMLText.fixed(v, 4) : HTMLText.fixed(v, 6)
    }
}
