import SmoothdMetrics
import SmoothdPipeline
/// The two-panel reliability diagram (Guo et al. 2017, Fig. 1): rows per confidence bin above, accuracy per bin
/// below with the diagonal of perfect calibration and the gap to each bin's mean confidence.
enum ReliabilityDiagram {
    static let width = 560.0
    static let left = 62.0, right = 16.0
    /// The histogram panel's top and height.
    static let histTop = 44.0, histHeight = 90.0
    /// The accuracy panel's top and height.
    static let accTop = 168.0, accHeight = 220.0
    static let height = 458.0
    static var plotWidth: Double { width - left - right }

    /// Appends the diagram's SVG. Ids and `data-*` attributes: `ID-ece` / `ID-mce` texts with `data-value`; one
    /// `.hist-bar` per non-empty bin with `data-count`; one `.acc-bar` per non-empty bin with `data-accuracy`, inside
    /// a panel whose `data-plot-height` is the height of accuracy 1.
    static func draw(_ m: MetricReport, title: String, id: String, to out: inout String) {
        let bins = m.values.reliability
        let x = { (c: Double) in left + c * plotWidth }
        out += "<svg class=\"reliability\" id=\"\(id)-reliability\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\""
            + " role=\"img\" aria-label=\"Reliability diagram of \(HTMLText.escape(title))\" xmlns=\"http://www.w3.org/2000/svg\">\n"
        out += "<text class=\"calibration\" id=\"\(id)-ece\" data-value=\"\(HTMLText.exact(m.values.ece))\" x=\"\(left)\" y=\"18\""
            + " aria-label=\"expected calibration error \(HTMLText.metric(m.values.ece))\">ECE \(HTMLText.metric(m.values.ece))</text>\n"
        out += "<text class=\"calibration\" id=\"\(id)-mce\" data-value=\"\(HTMLText.exact(m.values.mce))\" x=\"\(left + 130)\" y=\"18\""
            + " aria-label=\"maximum calibration error \(HTMLText.metric(m.values.mce))\">MCE \(HTMLText.metric(m.values.mce))</text>\n"
        out += "<text x=\"\(left + 260)\" y=\"18\">\(m.countedRows) rows, \(bins.count) bins</text>\n"

        // Histogram: bar heights relative to the fullest bin.
        let maxCount = bins.map(\.count).max() ?? 0
        let histBottom = histTop + histHeight
        out += "<g class=\"histogram\" data-plot-height=\"\(HTMLText.px(histHeight))\" data-max-count=\"\(maxCount)\">\n"
        out += "<line class=\"axis\" x1=\"\(left)\" y1=\"\(histBottom)\" x2=\"\(x(1))\" y2=\"\(histBottom)\"/>"
            + "<line class=\"axis\" x1=\"\(left)\" y1=\"\(histTop)\" x2=\"\(left)\" y2=\"\(histBottom)\"/>\n"
        out += "<text x=\"\(left - 4)\" y=\"\(histTop + 4)\" text-anchor=\"end\">\(maxCount)</text>"
            + "<text x=\"\(left - 4)\" y=\"\(histBottom)\" text-anchor=\"end\">0</text>\n"
        out += "<text transform=\"translate(14 \(histTop + histHeight / 2)) rotate(-90)\" text-anchor=\"middle\">rows</text>\n"
        for (b, bin) in bins.enumerated() where bin.count > 0 {
            let h = histHeight * Double(bin.count) / Double(maxCount)
            let x0 = x(bin.lower) + 0.5, w = max(0.5, (bin.upper - bin.lower) * plotWidth - 1)
            out += "<rect class=\"hist-bar\" data-bin=\"\(b)\" data-count=\"\(bin.count)\" x=\"\(HTMLText.px(x0))\" y=\"\(HTMLText.px(histBottom - h))\""
                + " width=\"\(HTMLText.px(w))\" height=\"\(HTMLText.px(h))\" aria-label=\"\(range(bin)): \(bin.count) rows\"><title>\(range(bin)): \(bin.count) rows</title></rect>\n"
        }
        out += "</g>\n"

        // Accuracy per bin, the diagonal, and the gap between accuracy and the bin's mean confidence.
        let accBottom = accTop + accHeight
        let y = { (v: Double) in accBottom - v * accHeight }
        out += "<g class=\"accuracy\" data-plot-height=\"\(HTMLText.px(accHeight))\" data-plot-bottom=\"\(HTMLText.px(accBottom))\">\n"
        for t in stride(from: 0.0, through: 1.0001, by: 0.2) {
            let label = HTMLText.fixed(t, 1)
            out += "<line class=\"grid\" x1=\"\(left)\" y1=\"\(HTMLText.px(y(t)))\" x2=\"\(x(1))\" y2=\"\(HTMLText.px(y(t)))\"/>"
                + "<text x=\"\(left - 4)\" y=\"\(HTMLText.px(y(t) + 4))\" text-anchor=\"end\">\(label)</text>"
                + "<text x=\"\(HTMLText.px(x(t)))\" y=\"\(accBottom + 14)\" text-anchor=\"middle\">\(label)</text>\n"
        }
        for (b, bin) in bins.enumerated() {
            guard let accuracy = bin.accuracy, let confidence = bin.meanConfidence else { continue }
            let x0 = x(bin.lower) + 0.5, w = max(0.5, (bin.upper - bin.lower) * plotWidth - 1)
            let h = accuracy * accHeight
            out += "<rect class=\"acc-bar\" data-bin=\"\(b)\" data-accuracy=\"\(HTMLText.exact(accuracy))\" data-count=\"\(bin.count)\""
                + " x=\"\(HTMLText.px(x0))\" y=\"\(HTMLText.px(accBottom - h))\" width=\"\(HTMLText.px(w))\" height=\"\(HTMLText.px(h))\""
                + " aria-label=\"\(range(bin)): accuracy \(HTMLText.metric(accuracy)) over \(bin.count) rows\">"
                + "<title>\(range(bin)): accuracy \(HTMLText.metric(accuracy)), mean confidence \(HTMLText.metric(confidence)), \(bin.count) rows</title></rect>\n"
            let top = max(accuracy, confidence), gap = abs(accuracy - confidence)
            out += "<rect class=\"gap\" data-bin=\"\(b)\" data-gap=\"\(HTMLText.exact(gap))\" x=\"\(HTMLText.px(x0 + w * 0.2))\" y=\"\(HTMLText.px(y(top)))\""
                + " width=\"\(HTMLText.px(w * 0.6))\" height=\"\(HTMLText.px(gap * accHeight))\" aria-label=\"\(range(bin)): gap \(HTMLText.metric(gap))\"/>"
                + "<line class=\"conf-mark\" data-bin=\"\(b)\" data-mean-confidence=\"\(HTMLText.exact(confidence))\" x1=\"\(HTMLText.px(x0))\""
                + " y1=\"\(HTMLText.px(y(confidence)))\" x2=\"\(HTMLText.px(x0 + w))\" y2=\"\(HTMLText.px(y(confidence)))\"/>\n"
        }
        out += "<line class=\"diagonal\" x1=\"\(x(0))\" y1=\"\(y(0))\" x2=\"\(x(1))\" y2=\"\(y(1))\"/>\n"
        out += "<line class=\"axis\" x1=\"\(left)\" y1=\"\(accBottom)\" x2=\"\(x(1))\" y2=\"\(accBottom)\"/>"
            + "<line class=\"axis\" x1=\"\(left)\" y1=\"\(accTop)\" x2=\"\(left)\" y2=\"\(accBottom)\"/>\n"
        out += "<text transform=\"translate(14 \(accTop + accHeight / 2)) rotate(-90)\" text-anchor=\"middle\">accuracy (fraction correct)</text>\n"
        out += "<text x=\"\(left + plotWidth / 2)\" y=\"\(accBottom + 32)\" text-anchor=\"middle\">confidence: max probability of a row (fraction)</text>\n"
        out += "</g>\n"
        // Legend (own classes, so tests counting bars do not count it).
        let ly = height - 6
        out += "<rect class=\"swatch-acc\" x=\"\(left)\" y=\"\(ly - 9)\" width=\"12\" height=\"10\"/><text x=\"\(left + 16)\" y=\"\(ly)\">accuracy</text>"
            + "<line class=\"swatch-conf\" x1=\"\(left + 84)\" y1=\"\(ly - 4)\" x2=\"\(left + 98)\" y2=\"\(ly - 4)\"/><text x=\"\(left + 102)\" y=\"\(ly)\">mean confidence</text>"
            + "<rect class=\"swatch-gap\" x=\"\(left + 210)\" y=\"\(ly - 9)\" width=\"12\" height=\"10\"/><text x=\"\(left + 226)\" y=\"\(ly)\">gap</text>"
            + "<line class=\"swatch-diagonal\" x1=\"\(left + 262)\" y1=\"\(ly - 4)\" x2=\"\(left + 284)\" y2=\"\(ly - 4)\"/><text x=\"\(left + 288)\" y=\"\(ly)\">perfect calibration</text>\n"
        out += "</svg>\n"
    }

    /// `confidence 0.60–0.67`.
    private static func range(_ bin: ReliabilityBin) -> String {
        "confidence \(HTMLText.fixed(bin.lower, 2))–\(HTMLText.fixed(bin.upper, 2))"
    }
}
