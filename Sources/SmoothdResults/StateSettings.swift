import SmoothdMetrics

/// The options a state was computed with that merging cannot convert: top-k, ECE bins, the temperature sweep and
/// the bootstrap's R.
struct StateSettings: Hashable {
    let topK: Int
    let eceBins: Int
    let temperatures: [Double]
    let bootstrapReplicates: Int

    /// The settings of `state`.
    init(_ state: MetricAccumulator) {
        topK = state.topK
        eceBins = state.eceBins
        temperatures = state.temperatures
        bootstrapReplicates = state.bootstrapReplicates
    }

    /// The settings a merge under `options` expects.
    init(_ options: MetricOptions) {
        topK = options.topK
        eceBins = options.eceBins
        temperatures = options.allTemperatures
        bootstrapReplicates = options.bootstrapReplicates
    }

    /// `top-k 5 and 15 ECE bins`, then the sweep (`, temperatures 0.5,2.0` or `, no temperatures`) and R
    /// (`, 200 bootstrap replicates` or `, no bootstrap`) where they differ from `other`'s.
    func phrase(against other: StateSettings) -> String {
        var text = "top-k \(topK) and \(eceBins) ECE bins"
        if temperatures != other.temperatures { text += temperatures.isEmpty ? ", no temperatures" : ", temperatures \(list)" }
        if bootstrapReplicates != other.bootstrapReplicates {
            text += bootstrapReplicates > 0 ? ", \(bootstrapReplicates) bootstrap replicates" : ", no bootstrap"
        }
        return text
    }

    /// The flags that merge such states, `--temperatures` and `--bootstrap` included where they differ from `other`'s.
    func flags(against other: StateSettings) -> String {
        var text = "--top-k \(topK) --ece-bins \(eceBins)"
        if temperatures != other.temperatures { text += temperatures.isEmpty ? " (without --temperatures)" : " --temperatures \(list)" }
        if bootstrapReplicates != other.bootstrapReplicates {
            text += bootstrapReplicates > 0 ? " --bootstrap \(bootstrapReplicates)" : " (without --bootstrap)"
        }
        return text
    }

    private var list: String { temperatures.map(\.description).joined(separator: ",") }
}
