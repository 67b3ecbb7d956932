// swift-tools-version:6.2
import PackageDescription

let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

/// A smoothd library target: every one is built with `strict`, and some with `extra` settings too.
func module(_ name: String, _ dependencies: [Target.Dependency] = [], extra: [SwiftSetting] = []) -> Target {
    .target(name: name, dependencies: dependencies, swiftSettings: strict + extra)
}

/// Products of one package dependency.
func products(_ names: String..., of package: String) -> [Target.Dependency] {
    names.map { .product(name: $0, package: package) }
}

let deque = products("DequeModule", of: "swift-collections")
let logging = products("Logging", of: "swift-log")

// The AVX2 and AVX-512 kernel modules are compiled for those CPUs; elsewhere they are plain builds.
#if arch(x86_64)
let avx2: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell"])]
let avx512: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "skylake-avx512"])]
#else
let avx2: [SwiftSetting] = []
let avx512: [SwiftSetting] = []
#endif

let package = Package(
    name: "smoothd",
    // `Mutex` (Synchronization) needs macOS 15; smoothd is deployed on Linux, where this has no effect.
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "smoothd", targets: ["smoothd"]),
        .executable(name: "smoothd-bench", targets: ["SmoothdBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        // Already built for swift-nio; the pipeline uses its Deque.
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
    ],
    targets: [
        // libzstd from the system (Debian: libzstd-dev), found through pkg-config.
        .systemLibrary(
            name: "CZstd",
            pkgConfig: "libzstd",
            providers: [.apt(["libzstd-dev"])]
        ),
        // Streaming zstd with caller-owned buffers, and frame indexing for parallel decoding.
        module("Zstd", ["CZstd"]),
        // A small ordered JSON value with a deterministic writer and a parser.
        module("SmoothdJSON"),
        // LSHD v1: header, incremental parser, writer, typed errors.
        module("LSHDFormat", ["SmoothdJSON"]),
        // The SIMD row kernel, generic over the logit dtype and inlinable into CPU-specific builds.
        module("SmoothdKernel"),
        // The same kernel compiled for AVX2; chosen at run time, never called on older CPUs.
        module("SmoothdKernelAVX2", ["SmoothdKernel"], extra: avx2),
        // And for AVX-512 (one 16-lane register per vector).
        module("SmoothdKernelAVX512", ["SmoothdKernel"], extra: avx512),
        // CPU feature detection for that choice.
        .target(name: "CCPUFeatures"),
        // Kernel dispatch and mergeable metric accumulators.
        module("SmoothdMetrics", ["SmoothdKernel", "SmoothdKernelAVX2", "SmoothdKernelAVX512", "CCPUFeatures", "LSHDFormat", "SmoothdJSON"]),
        // Runs of shards: group keys, their order, identity and supersession, completeness, per-group states.
        // Pure (no I/O, no clock), shared by eval and serve.
        module("SmoothdRuns", ["SmoothdJSON", "SmoothdMetrics"]),
        // Bounded-memory, multi-threaded shard evaluation and shard reports.
        module("SmoothdPipeline", ["Zstd", "LSHDFormat", "SmoothdMetrics", "SmoothdJSON", "SmoothdRuns"] + deque),
        // Reading results (eval --json documents, serve summaries and output directories) and merging them
        // per group exactly: `smoothd merge` and `smoothd report`. Pure apart from reading files; no daemon.
        module("SmoothdResults", ["SmoothdJSON", "SmoothdMetrics", "SmoothdRuns", "SmoothdPipeline"]),
        // The HTML report (reliability diagrams, checkpoint trends): a pure renderer of a typed document.
        module("SmoothdReport", ["SmoothdJSON", "SmoothdMetrics", "SmoothdPipeline", "SmoothdRuns", "SmoothdResults"]),
        // Test support shared by the test suites, the benchmarks and the fuzz target: SplitMix, fuzz inputs, reference comparison.
        module("SmoothdTesting", ["Zstd", "SmoothdJSON"]),
        // The spool service: detection, claim/commit, totals, metrics, systemd integration.
        module(
            "SmoothdDaemon",
            ["SmoothdPipeline", "SmoothdMetrics", "SmoothdJSON", "SmoothdRuns", "LSHDFormat", "SmoothdReport"] + logging + deque
                + products("Metrics", of: "swift-metrics") + products("Prometheus", of: "swift-prometheus")
                + products("ServiceLifecycle", of: "swift-service-lifecycle") + products("NIOCore", "NIOPosix", "NIOHTTP1", of: "swift-nio")
        ),
        // The thin command-line front end: eval, serve, bench.
        .executableTarget(
            name: "smoothd",
            dependencies: ["SmoothdPipeline", "SmoothdDaemon", "SmoothdMetrics", "SmoothdJSON", "SmoothdRuns", "SmoothdResults", "SmoothdReport", "LSHDFormat", "Zstd"]
                + products("ArgumentParser", of: "swift-argument-parser") + logging,
            swiftSettings: strict
        ),
        // Benchmarks against `zstd -d` and the kernel alone (release builds only; see Benchmarks/README.md).
        .executableTarget(
            name: "SmoothdBench",
            dependencies: ["SmoothdPipeline", "SmoothdMetrics", "SmoothdKernelAVX2", "SmoothdKernelAVX512", "LSHDFormat", "Zstd", "SmoothdJSON", "SmoothdTesting"],
            path: "Benchmarks/SmoothdBench",
            swiftSettings: strict
        ),
        // libFuzzer target for the shard reader and the metric pipeline. Scripts/fuzz builds it with
        // -sanitize=fuzzer,address; a plain build makes a runner for saved inputs (see Sources/SmoothdFuzz/main.swift).
        .executableTarget(
            name: "SmoothdFuzz",
            dependencies: ["SmoothdPipeline", "SmoothdMetrics", "LSHDFormat", "Zstd", "SmoothdJSON", "SmoothdTesting"],
            swiftSettings: strict
        ),
        .testTarget(name: "ZstdTests", dependencies: ["Zstd"]),
        .testTarget(name: "LSHDFormatTests", dependencies: ["LSHDFormat", "SmoothdJSON", "Zstd"]),
        .testTarget(name: "SmoothdMetricsTests", dependencies: ["SmoothdMetrics", "SmoothdKernel", "LSHDFormat", "SmoothdTesting"]),
        .testTarget(name: "SmoothdRunsTests", dependencies: ["SmoothdRuns", "SmoothdJSON", "SmoothdMetrics", "SmoothdTesting"]),
        .testTarget(name: "SmoothdResultsTests", dependencies: ["SmoothdResults", "SmoothdRuns", "SmoothdJSON", "SmoothdMetrics", "SmoothdPipeline", "SmoothdTesting"]),
        .testTarget(
            name: "SmoothdPipelineTests",
            dependencies: ["SmoothdPipeline", "SmoothdMetrics", "LSHDFormat", "Zstd", "SmoothdJSON", "SmoothdTesting"]
        ),
        .testTarget(
            name: "SmoothdDaemonTests",
            dependencies: ["SmoothdDaemon", "SmoothdPipeline", "SmoothdJSON", "SmoothdMetrics", "SmoothdRuns", "LSHDFormat", "Zstd", "SmoothdTesting"]
        ),
        .testTarget(name: "SmoothdCLITests", dependencies: ["SmoothdJSON", "SmoothdTesting"]),
    ]
)
