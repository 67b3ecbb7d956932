import SmoothdJSON
import SmoothdMetrics

extension ShardReport {
    /// `by_temperature` keys: the shortest decimal of T that reads back as the double (`0.5`, `1.0`, `1e-05`).
    public static func temperatureKey(_ t: Double) -> String { t.description }
}

extension TemperatureValues: JSONObjectEncodable {
    /// `nll`, `loss`, `mean_confidence`, `ece`, `mce`, `brier`, `entropy` (null when no row was counted).
    public var jsonMembers: [(String, JSONValue)] {
        [("nll", .number(nll)), ("loss", .number(loss)), ("mean_confidence", .number(meanConfidence)), ("ece", .number(ece)),
         ("mce", .number(mce)), ("brier", .number(brier)), ("entropy", .number(entropy))]
    }
}

extension BestTemperature: JSONObjectEncodable {
    /// `temperature`, `nll`, `ece`, `within_grid`.
    public var jsonMembers: [(String, JSONValue)] {
        [("temperature", .double(temperature)), ("nll", .double(nll)), ("ece", .double(ece)), ("within_grid", .bool(withinGrid))]
    }
}

extension MetricValues {
    /// `adaptive_ece`, always.
    var adaptiveMembers: [(String, JSONValue)] { [("adaptive_ece", .number(adaptiveECE))] }

    /// `by_temperature` {"T": {...}} and `best_temperature` (null without counted rows), only with a sweep.
    var temperatureMembers: [(String, JSONValue)] {
        guard !byTemperature.isEmpty else { return [] }
        return [("by_temperature", .object(byTemperature.map { (ShardReport.temperatureKey($0.temperature), $0.json) })),
                ("best_temperature", bestTemperature?.json ?? .null)]
    }
}
