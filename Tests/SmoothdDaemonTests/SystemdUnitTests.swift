import Foundation
import Testing

/// `systemd/smoothd.service`: the directives the issue asks for, `systemd-analyze verify`, and an exposure score
/// of at most 2.0 from `systemd-analyze security --offline=true` (when systemd-analyze is installed).
@Suite("systemd unit")
struct SystemdUnitTests {
    static let unitPath = Binary.packageRoot + "/systemd/smoothd.service"
    static let analyzer: String? = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].first { FileManager.default.isExecutableFile(atPath: $0) }

    var directives: [String: [String]] {
        var result: [String: [String]] = [:]
        for line in Files.text(SystemdUnitTests.unitPath).split(separator: "\n") where !line.hasPrefix("#") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            result[String(line[..<eq]), default: []].append(String(line[line.index(after: eq)...]))
        }
        return result
    }

    @Test func hasTheRequiredDirectives() {
        let d = directives
        #expect(d["Type"] == ["notify"])
        #expect(d["WatchdogSec"]?.first?.isEmpty == false)
        #expect(d["Restart"] == ["on-failure"])
        #expect(d["ExecStart"]?.first?.contains("serve --config /etc/smoothd/") == true)
        #expect(d["User"] == ["smoothd"])
        #expect(d["ProtectSystem"] == ["strict"])
        #expect(d["ReadWritePaths"]?.first?.contains("/var/spool/smoothd") == true)
        #expect(d["ReadWritePaths"]?.first?.contains("/var/lib/smoothd") == true)
        for yes in ["NoNewPrivileges", "PrivateTmp", "ProtectHome"] { #expect(d[yes] == ["yes"], "\(yes)") }
        #expect(d["RestrictAddressFamilies"]?.isEmpty == false)
        #expect(d["SystemCallFilter"]?.contains("@system-service") == true)
        #expect(d["MemoryMax"]?.isEmpty == false)
        #expect(d["TimeoutStopSec"] == ["10s"])
        // Unprivileged: no capabilities at all, no way to gain any, and the metrics port reachable from
        // localhost only.
        #expect(d["CapabilityBoundingSet"] == [""] && d["AmbientCapabilities"] == [""])
        #expect(d["PrivateUsers"] == ["yes"] && d["RestrictSUIDSGID"] == ["yes"])
        #expect(d["IPAddressDeny"] == ["any"] && d["IPAddressAllow"] == ["localhost"])
    }

    /// Runs systemd-analyze on a copy of the unit whose ExecStart points at an existing executable
    /// (verify checks that the binary exists).
    func analyze(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let dir = TempDirectory()
        defer { dir.remove() }
        let binary = (try? Binary.smoothd()) ?? "/bin/sh"
        let unit = Files.text(SystemdUnitTests.unitPath).replacingOccurrences(of: "/usr/local/bin/smoothd", with: binary)
        let copy = dir.sub("smoothd.service")
        try Files.write(Array(unit.utf8), to: copy)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(SystemdUnitTests.analyzer))
        process.arguments = arguments + [copy]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test(.enabled(if: SystemdUnitTests.analyzer != nil, "systemd-analyze is not installed"))
    func verifyPasses() throws {
        let result = try analyze(["verify"])
        #expect(result.status == 0, "\(result.output)")
    }

    @Test(.enabled(if: SystemdUnitTests.analyzer != nil, "systemd-analyze is not installed"))
    func exposureIsAtMostTwo() throws {
        let result = try analyze(["security", "--offline=true", "--no-pager"])
        let line = try #require(result.output.split(separator: "\n").first { $0.contains("Overall exposure level") }, "\(result.output)")
        let score = line.split(separator: ":").last?.split(separator: " ").first.flatMap { Double($0) }
        let value = try #require(score, "\(line)")
        print("systemd-analyze security --offline=true: exposure \(value)")
        #expect(value <= 2.0)
    }
}
