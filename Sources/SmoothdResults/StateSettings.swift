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
        "top-k \(topK) and \(eceBins) ECE bins" + differences(from: other, sweep: (", temperatures ", ", no temperatures"),
                                                          bootstrap: { ", \($0) bootstrap replicates" }, noBootstrap: ", no bootstrap")
    }

    /// The flags that merge such states, `--temperatures` and `--bootstrap` included where they differ from `other`'s.
    func flags(against other: StateSettings) -> String {
        "--top-k \(topK) --ece-bins \(eceBins)" + differences(from: other, sweep: (" --temperatures ", " (without --temperatures)"),
                                                               bootstrap: { " --bootstrap \($0)" }, noBootstrap: " (without --bootstrap)")
    }

    /// The words for the sweep and R where they differ from `other`'s: `sweep.some` + the list or `sweep.none`,
    /// then `bootstrap(R)` or `noBootstrap`.
    private func differences(from other: StateSettings, sweep: (some: String, none: String), bootstrap: (Int) -> String,
                             noBootstrap: String) -> String {
        var text = ""
        if temperatures != other.temperatures { text += temperatures.isEmpty ? sweep.none : sweep.some + list }
        if bootstrapReplicates != other.bootstrapReplicates { text += bootstrapReplicates > 0 ? bootstrap(bootstrapReplicates) : noBootstrap }
        return text
    }

    private var list: String { temperatures.map(\.description).joined(separator: ",") }
}
