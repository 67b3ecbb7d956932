import SmoothdMetrics

/// The options a state was computed with that merging cannot convert: top-k, ECE bins and the temperature sweep.
struct StateSettings: Hashable {
    let topK: Int
    let eceBins: Int
    let temperatures: [Double]

    /// The settings of `state`.
    init(_ state: MetricAccumulator) {
        topK = state.topK
        eceBins = state.eceBins
        temperatures = state.temperatures
    }

    /// The settings a merge under `options` expects.
    init(_ options: MetricOptions) {
        topK = options.topK
        eceBins = options.eceBins
        temperatures = options.allTemperatures
    }

    /// `top-k 5 and 15 ECE bins`, and `, temperatures 0.5,2.0` or `, no temperatures` when `sweep` (the sweeps differ).
    func phrase(sweep: Bool) -> String {
        "top-k \(topK) and \(eceBins) ECE bins" + (!sweep ? "" : temperatures.isEmpty ? ", no temperatures" : ", temperatures \(list)")
    }

    /// The flags that merge such states, `--temperatures` included when `sweep`.
    func flags(sweep: Bool) -> String {
        "--top-k \(topK) --ece-bins \(eceBins)" + (!sweep ? "" : temperatures.isEmpty ? " (without --temperatures)" : " --temperatures \(list)")
    }

    private var list: String { temperatures.map(\.description).joined(separator: ",") }
}
