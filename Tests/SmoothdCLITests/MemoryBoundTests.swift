import Foundation
import SmoothdJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Runs `executable` with `arguments` and returns its exit status and peak RSS in bytes (from wait4).
func runMeasuringPeakRSS(_ executable: URL, _ arguments: [String]) throws -> (status: Int32, peakRSS: Int) {
    var pid: pid_t = 0
    let argv = ([executable.path] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    defer { posix_spawn_file_actions_destroy(&actions) }
    let spawned = posix_spawn(&pid, executable.path, &actions, nil, argv, environ)
    guard spawned == 0 else { throw POSIXError(POSIXErrorCode(rawValue: spawned) ?? .EIO) }
    var status: Int32 = 0
    var usage = rusage()
    while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
    let exitStatus = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    return (exitStatus, usage.ru_maxrss * 1024)
}

/// A shard of 1 GiB of payload (highly compressible, generated here) is evaluated while the process's
/// peak RSS stays within its own baseline (the same binary on a tiny shard) plus the memory budget.
@Test func oneGiBShardStaysWithinTheMemoryBudget() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("smoothd-memory-\(getpid())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let shard = directory.appendingPathComponent("big.lshd.zst").path
    let bench = smoothdBinary.deletingLastPathComponent().appendingPathComponent("smoothd-bench")
    let generated = try runSmoothdTool(bench, ["generate-compressible", "1.01", shard])
    #expect(generated.status == 0, "\(generated.stderr)")

    let budget = 16 << 20
    let baseline = try runMeasuringPeakRSS(smoothdBinary, ["eval", "--memory-budget", "\(budget)", "--json",
                                                           repository.appendingPathComponent("Fixtures/valid/k2.lshd.zst").path])
    #expect(baseline.status == 0)
    let big = try runMeasuringPeakRSS(smoothdBinary, ["eval", "--memory-budget", "\(budget)", "--json", shard])
    #expect(big.status == 0)
    print("memory: 1 GiB shard peak RSS \(big.peakRSS >> 20) MiB; tiny shard \(baseline.peakRSS >> 20) MiB; budget \(budget >> 20) MiB")
    #expect(big.peakRSS <= baseline.peakRSS + budget,
            "peak RSS \(big.peakRSS >> 20) MiB, baseline \(baseline.peakRSS >> 20) MiB, budget \(budget >> 20) MiB")

    // The payload really was over 1 GiB.
    let json = try runSmoothd(["eval", "--json", "--memory-budget", "\(budget)", shard])
    let entry = try #require(try JSONValue.parse(json.stdout)["shards"]?.arrayValue?.first)
    #expect((entry["payload_bytes"]?.intValue ?? 0) >= 1 << 30)
    #expect((entry["counted_rows"]?.intValue ?? 0) > 0)
}

func runSmoothdTool(_ executable: URL, _ arguments: [String]) throws -> ProcessResult {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    let err = Pipe()
    process.standardOutput = FileHandle.nullDevice
    process.standardError = err
    try process.run()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return ProcessResult(status: process.terminationStatus, stdout: "", stderr: String(decoding: errData, as: UTF8.self))
}
