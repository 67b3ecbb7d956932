#if canImport(Glibc)
import Glibc
#endif
import LSHDFormat
import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline
import SmoothdTesting
import Zstd

/// Runs one input through every path and checks the invariants; returns -1 for inputs not worth keeping.
enum FuzzHarness {
    /// The metric settings of every evaluation: both smoothing terms and several ε from one pass.
    static let metrics = MetricOptions(smoothing: 0.1, mode: .uniform, reportSmoothing: [0, 0.3], topK: 3, eceBins: 15)
    /// Payloads that decode to more than this are skipped (a few bytes of zstd can promise gigabytes:
    /// that is the decompression-bomb test's job, not the fuzzer's, which needs fast executions).
    static let maximumPayload = 4 << 20

    /// The evaluation settings compared: 1 vs 2 threads, a tiny vs the default budget, one vs many
    /// frame groups. Their report entries must be identical, timing aside. Each input runs the first
    /// two and one of the last two (by its length), which keeps executions fast: every evaluation
    /// starts threads and allocates its decoders' buffers.
    static let configurations: [(name: String, options: EvaluationOptions)] = {
        func options(threads: Int, budget: Int, segment: Int?) -> EvaluationOptions {
            var o = EvaluationOptions(metrics: metrics, threads: threads, memoryBudget: budget)
            o.segmentTargetBytes = segment
            return o
        }
        return [
            ("threads 1, default budget", options(threads: 1, budget: EvaluationOptions.defaultMemoryBudget, segment: nil)),
            ("threads 2, budget 1 B, 1-byte frame groups", options(threads: 2, budget: 1, segment: 1)),
            ("threads 2, default budget, 1-byte frame groups", options(threads: 2, budget: EvaluationOptions.defaultMemoryBudget, segment: 1)),
            ("threads 1, budget 4 KiB", options(threads: 1, budget: 4096, segment: nil)),
        ]
    }()

    static let file = ScratchFile()
    /// Set by the replay mode: receives the report entry of the first configuration for each input.
    nonisolated(unsafe) static var showEntry: ((JSONValue) -> Void)?

    static func run(_ data: UnsafeRawBufferPointer) -> Int32 {
        guard let input = FuzzInput(data) else { return 0 }
        switch input.path {
        case .rawSingleFrame, .rawManyFrames: return runRaw(input)
        case .compressedFile: return runCompressed(input)
        }
    }

    // MARK: - Raw payloads

    static func runRaw(_ input: FuzzInput) -> Int32 {
        let payload = input.body
        let direct = parseDirectly(payload, input)
        let compressed: [UInt8]
        do {
            compressed = try input.shardFile()
        } catch {
            violated("compressing \(payload.count) bytes failed: \(error)")
        }
        let outcome = evaluateEverywhere(compressed, payloadLength: UInt64(payload.count))
        compare(outcome, with: direct, payloadLength: UInt64(payload.count), context: "raw payload")
        return 0
    }

    // MARK: - Compressed files

    static func runCompressed(_ input: FuzzInput) -> Int32 {
        let sequential = SequentialDecode(input.body, limit: maximumPayload)
        if sequential.tooLarge { return -1 }
        let decoded = UInt64(sequential.payload.count)
        let outcome = evaluateEverywhere(input.body, payloadLength: decoded)
        switch outcome {
        case .success(let summary):
            require(sequential.isComplete, "pipeline accepted a file that zstd does not decode cleanly (\(sequential))")
            require(summary.payloadBytes == decoded, "pipeline payload \(summary.payloadBytes) bytes, zstd \(decoded)")
            compare(outcome, with: parseDirectly(sequential.payload, input), payloadLength: decoded, context: "compressed file")
        case .failure(let failure):
            Invariants.check(failure.error, limit: decoded, "compressed file")
            require(failure.kind != .ioError, "I/O error on a memory file: \(failure)")
            if sequential.isComplete {
                compare(outcome, with: parseDirectly(sequential.payload, input), payloadLength: decoded, context: "compressed file")
                return 0
            }
            if failure.kind == .zstdError {
                require(sequential.zstdFailed, "pipeline reports a zstd error that sequential decoding does not see: \(failure)")
            }
            // Whatever the pipeline reports, no content error may come before it in payload order.
            let prefix = parseDirectly(sequential.payload, input)
            switch failure.kind {
            case .zstdError, .format(.truncated):
                if case .invalid(let first, _) = prefix, first.kind != .truncated {
                    require(first.offset! >= failure.error.offset!,
                            "pipeline reports \(failure.error) but the decoded bytes hold an earlier \(first)")
                }
            default:
                guard case .invalid(let first, _) = prefix else {
                    violated("pipeline reports \(failure.error) but the decoded bytes parse as a valid shard")
                }
                require(sameError(failure.error, first), "pipeline reports \(failure.error), direct parse of the decoded bytes \(first)")
            }
        }
        return 0
    }

    // MARK: - Shared

    static func parseDirectly(_ payload: [UInt8], _ input: FuzzInput) -> DirectParse.Result {
        let result = DirectParse.run(payload, metrics: metrics, pieceSize: input.pieceSize, rowsPerSpace: input.rowsPerSpace,
                                     labelMemoryLimit: input.labelsThroughReader ? 0 : 4 << 20, detach: input.labelsThroughReader)
        switch result {
        case .valid(let header, let accumulator, _):
            Invariants.check(accumulator, header: header, metrics: metrics, "direct parse")
        case .invalid(let error, let consumed):
            Invariants.check(error, limit: UInt64(payload.count), "direct parse")
            require(consumed <= UInt64(payload.count), "direct parse consumed \(consumed) of \(payload.count) bytes")
        }
        return result
    }

    /// The same rule broken at the same place (the wording may name how many bytes one read held).
    static func sameError(_ a: EvaluationError, _ b: ShardError) -> Bool {
        a.kind == .format(b.kind) && a.offset == b.offset && a.row == b.row
    }

    /// Evaluates `compressed` under every configuration; they must agree exactly (timing aside).
    /// `payloadLength` is what zstd decodes from it (up to its first error).
    static func evaluateEverywhere(_ compressed: [UInt8], payloadLength: UInt64) -> ShardOutcome {
        let fd = file.replace(with: compressed)
        var first: (outcome: ShardOutcome, entry: JSONValue)?
        let chosen = [configurations[0], configurations[1], configurations[2 + compressed.count % 2]]
        for (name, options) in chosen {
            let outcome = ShardEvaluator(options: options).evaluate(fileDescriptor: fd, displayName: "fuzz.lshd.zst")
            let entry = Invariants.withoutTiming(ReportEntry(outcome, options: metrics).json)
            switch outcome {
            case .success(let summary):
                Invariants.check(summary.accumulator, header: summary.header, metrics: metrics, name)
                require(summary.compressedBytes == UInt64(compressed.count), "\(name): compressed_bytes \(summary.compressedBytes)")
                Invariants.checkRoundTrip(entry, meta: summary.header.meta, name)
            case .failure(let failure):
                // `payloadBytes` counts what the parser had consumed when the failing piece began, so
                // the error itself may lie a little further on; both lie within what zstd decodes.
                Invariants.check(failure.error, limit: payloadLength, name)
                require(failure.payloadBytes <= payloadLength, "\(name): \(failure.payloadBytes) payload bytes of \(payloadLength) decoded")
                Invariants.checkRoundTrip(entry, meta: nil, name)
            }
            if let first {
                require(entry == first.entry, "results differ between '\(configurations[0].name)' and '\(name)':\n  \(first.entry.serialized())\n  \(entry.serialized())")
            } else {
                first = (outcome, entry)
                showEntry?(entry)
            }
        }
        return first!.outcome
    }

    /// The pipeline must reach the oracle's verdict: the same error, or the same header and exact state.
    static func compare(_ outcome: ShardOutcome, with direct: DirectParse.Result, payloadLength: UInt64, context: String) {
        switch (outcome, direct) {
        case (.success(let summary), .valid(let header, let accumulator, let payloadBytes)):
            require(summary.header == header, "\(context): header differs from the direct parse")
            require(summary.accumulator == accumulator, "\(context): metric state differs from the direct parse")
            require(summary.payloadBytes == payloadBytes && payloadBytes == payloadLength,
                    "\(context): payload_bytes \(summary.payloadBytes), direct \(payloadBytes), length \(payloadLength)")
        case (.failure(let failure), .invalid(let error, _)):
            require(sameError(failure.error, error), "\(context): pipeline reports \(failure.error), the direct parse \(error)")
            Invariants.check(failure.error, limit: payloadLength, context)
        case (.success, .invalid(let error, _)):
            violated("\(context): the pipeline accepted a shard the direct parse rejects with \(error)")
        case (.failure(let failure), .valid):
            violated("\(context): the pipeline rejected a shard the direct parse accepts: \(failure)")
        }
    }
}

/// The whole file decoded in one pass by one decoder, as `zstd -d` would.
struct SequentialDecode: CustomStringConvertible {
    var payload: [UInt8] = []
    /// Every input byte was used, without a zstd error, ending at a frame boundary.
    var isComplete = false
    var zstdFailed = false
    var tooLarge = false

    init(_ file: [UInt8], limit: Int) {
        // The pipeline's decoders accept windows up to 2^23 bytes at any budget and thread count.
        let decoder = ZstdDecompressor(windowLogMax: 23)
        var output = [UInt8](repeating: 0, count: ZstdDecompressor.recommendedOutputSize)
        var inputPosition = 0
        file.withUnsafeBytes { input in
            while true {
                var produced = 0
                let failed = output.withUnsafeMutableBytes { out -> Bool in
                    do throws(ZstdError) {
                        try decoder.decompress(input: input, inputPosition: &inputPosition, output: out, outputPosition: &produced)
                        return false
                    } catch {
                        return true
                    }
                }
                if failed {
                    payload += output[0..<produced]
                    zstdFailed = true
                    return
                }
                payload += output[0..<produced]
                if payload.count > limit { tooLarge = true; return }
                if inputPosition == input.count && produced < output.count { break }
            }
            isComplete = decoder.isAtFrameBoundary
        }
    }

    var description: String { "\(payload.count) bytes decoded, complete \(isComplete), zstd error \(zstdFailed)" }
}

/// One file in /dev/shm (or /tmp), unlinked at once, rewritten for each input.
final class ScratchFile: @unchecked Sendable {
    let fd: Int32

    init() {
        var made: Int32 = -1
        for directory in ["/dev/shm", "/tmp"] {
            let path = "\(directory)/smoothd-fuzz-\(getpid())"
            made = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            if made >= 0 {
                unlink(path)
                break
            }
        }
        guard made >= 0 else { violated("cannot create a scratch file: \(String(cString: strerror(errno)))") }
        fd = made
    }

    func replace(with bytes: [UInt8]) -> Int32 {
        require(ftruncate(fd, 0) == 0, "ftruncate failed")
        var written = 0
        bytes.withUnsafeBytes { raw in
            while written < raw.count {
                let n = pwrite(fd, raw.baseAddress! + written, raw.count - written, off_t(written))
                require(n > 0, "pwrite failed: \(String(cString: strerror(errno)))")
                written += n
            }
        }
        return fd
    }
}
