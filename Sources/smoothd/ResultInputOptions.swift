import ArgumentParser
import SmoothdResults

/// What `report` and `compare` read: shards (evaluated with the metric options), `eval --json` and `merge --json`
/// documents, summary and error records, and serve output directories.
struct ResultInputOptions: ParsableArguments {
    @Argument(help: ArgumentHelp("Shards, eval --json outputs, *.summary.json / *.error.json files, serve output directories.", valueName: "input"))
    var inputs: [String]

    /// Checks group selectors (`key=value[,key=value]`) as a usage error, before any input is read.
    static func validateSelectors(_ selectors: [String]) throws {
        for selector in selectors {
            do { _ = try GroupSelector(parsing: selector) } catch { throw ValidationError(error.description) }
        }
    }
}
