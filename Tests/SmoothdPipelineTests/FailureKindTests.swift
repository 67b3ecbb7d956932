import Foundation
import SmoothdPipeline
import Testing

/// The `kind` names of the error table in docs/SHARD-FORMAT.md (the project copy of the contract), in order.
func contractKindNames() throws -> [String] {
    let contract = try String(contentsOf: fixturesDirectory.deletingLastPathComponent().appendingPathComponent("docs/SHARD-FORMAT.md"),
                              encoding: .utf8)
    let table = contract.components(separatedBy: "Each error has a stable `kind`").dropFirst().first ?? ""
    var names: [String] = []
    let lines = table.split(separator: "\n", omittingEmptySubsequences: false).drop { !$0.hasPrefix("| `") }
    for line in lines {
        guard line.hasPrefix("| `") else { break }
        names.append(String(line.dropFirst(3).prefix { $0 != "`" }))
    }
    return names
}

/// The one failure kind writes exactly the contract's names, in the contract's order, and reads them back.
@Test func failureKindNamesAreTheContractsKinds() throws {
    let names = try contractKindNames()
    #expect(names.count == 16, "\(names)")
    #expect(FailureKind.allCases.map(\.name) == names)
    for kind in FailureKind.allCases {
        #expect(FailureKind(name: kind.name) == kind)
    }
    #expect(FailureKind(name: "unreadable") == nil)
}
