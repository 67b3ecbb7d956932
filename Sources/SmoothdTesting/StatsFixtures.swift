import Foundation
import SmoothdJSON

/// Fixtures/stats (issue 14: temperature sweep, adaptive ECE, bootstrap, compare) and the NumPy reference's
/// expected.json (Fixtures/stats/README.md describes both).
public enum StatsFixtures {
    /// The Fixtures directory.
    public static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures")

    /// Fixtures/stats/expected.json.
    public static let expected: JSONValue = {
        let data = try! Data(contentsOf: directory.appendingPathComponent("stats/expected.json"))
        return try! JSONValue.parse(utf8: data)
    }()

    /// The path of `file` as expected.json names it (`stats/temp_k10.lshd.zst`).
    public static func path(_ file: String) -> String { directory.appendingPathComponent(file).path }

    /// Every file of expected.json, in its order.
    public static var files: [String] { expected["files"]?.objectMembers?.map(\.0) ?? [] }

    /// The option set `name` (`uniform_b15`, `others_b10`): smoothing, mode, top-k, bins and temperatures.
    public static func options(_ name: String) -> (smoothing: Double, mode: String, topK: Int, eceBins: Int, temperatures: [Double]) {
        let set = expected["option_sets"]![name]!
        return (set["smoothing"]!.doubleValue!, set["smoothing_mode"]!.stringValue!, Int(set["top_k"]!.intValue!),
                Int(set["ece_bins"]!.intValue!), set["temperatures"]!.arrayValue!.map { $0.doubleValue! })
    }

    /// The option sets' names.
    public static var optionSets: [String] { expected["option_sets"]?.objectMembers?.map(\.0) ?? [] }

    /// The command-line flags of option set `name`.
    public static func flags(_ name: String) -> [String] {
        let o = options(name)
        return ["--smoothing", o.smoothing.description, "--smoothing-mode", o.mode, "--top-k", String(o.topK),
                "--ece-bins", String(o.eceBins), "--temperatures", o.temperatures.map(\.description).joined(separator: ",")]
    }
}
