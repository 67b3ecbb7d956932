// swift-tools-version:6.2
import PackageDescription

let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

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
        .target(name: "Zstd", dependencies: ["CZstd"], swiftSettings: strict),
        // A small ordered JSON value with a deterministic writer and a parser.
        .target(name: "SmoothdJSON", swiftSettings: strict),
        // LSHD v1: header, incremental parser, writer, typed errors.
        .target(name: "LSHDFormat", dependencies: ["SmoothdJSON"], swiftSettings: strict),
        // The SIMD row kernel, generic over the logit dtype and inlinable into CPU-specific builds.
        .target(name: "SmoothdKernel", swiftSettings: strict),
        // The same kernel compiled for AVX2; chosen at run time, never called on older CPUs.
        .target(name: "SmoothdKernelAVX2", dependencies: ["SmoothdKernel"], swiftSettings: strict + avx2),
        // And for AVX-512 (one 16-lane register per vector).
        .target(name: "SmoothdKernelAVX512", dependencies: ["SmoothdKernel"], swiftSettings: strict + avx512),
        // CPU feature detection for that choice.
        .target(name: "CCPUFeatures"),
        // Kernel dispatch and mergeable metric accumulators.
        .target(
            name: "SmoothdMetrics",
            dependencies: ["SmoothdKernel", "SmoothdKernelAVX2", "SmoothdKernelAVX512", "CCPUFeatures", "LSHDFormat", "SmoothdJSON"],
            swiftSettings: strict
        ),
        // Runs of shards: group keys, their order, identity and supersession, completeness, per-group states.
        // Pure (no I/O, no clock), shared by eval and serve.
        .target(name: "SmoothdRuns", dependencies: ["SmoothdJSON", "SmoothdMetrics"], swiftSettings: strict),
        // Bounded-memory, multi-threaded shard evaluation and shard reports.
        .target(
            name: "SmoothdPipeline",
            dependencies: ["Zstd", "LSHDFormat", "SmoothdMetrics", "SmoothdJSON", "SmoothdRuns", .product(name: "DequeModule", package: "swift-collections")],
            swiftSettings: strict
        ),
        // Reading results (eval --json documents, serve summaries and output directories) and merging them
        // per group exactly: `smoothd merge` and `smoothd report`. Pure apart from reading files; no daemon.
        .target(
            name: "SmoothdResults",
            dependencies: ["SmoothdJSON", "SmoothdMetrics", "SmoothdRuns", "SmoothdPipeline"],
            swiftSettings: strict
        ),
        // Test support shared by the test suites, the benchmarks and the fuzz target: SplitMix, fuzz inputs, reference comparison.
        .target(name: "SmoothdTesting", dependencies: ["Zstd", "SmoothdJSON"], swiftSettings: strict),
        // The spool service: detection, claim/commit, totals, metrics, systemd integration.
        .target(
            name: "SmoothdDaemon",
            dependencies: [
                "SmoothdPipeline", "SmoothdMetrics", "SmoothdJSON", "LSHDFormat",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // The thin command-line front end: eval, serve, bench.
        .executableTarget(
            name: "smoothd",
            dependencies: [
                "SmoothdPipeline", "SmoothdDaemon", "SmoothdMetrics", "SmoothdJSON", "SmoothdRuns", "SmoothdResults", "LSHDFormat", "Zstd",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Benchmarks against `zstd -d` and the kernel alone (release builds only; see Benchmarks/README.md).
        .executableTarget(
            name: "SmoothdBench",
            dependencies: ["SmoothdPipeline", "SmoothdMetrics", "LSHDFormat", "Zstd", "SmoothdJSON", "SmoothdTesting"],
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
        .testTarget(name: "SmoothdMetricsTests", dependencies: ["SmoothdMetrics", "LSHDFormat", "SmoothdTesting"]),
        .testTarget(name: "SmoothdRunsTests", dependencies: ["SmoothdRuns", "SmoothdJSON", "SmoothdMetrics"]),
        .testTarget(name: "SmoothdResultsTests", dependencies: ["SmoothdResults", "SmoothdRuns", "SmoothdJSON", "SmoothdMetrics", "SmoothdPipeline", "SmoothdTesting"]),
        .testTarget(
            name: "SmoothdPipelineTests",
            dependencies: ["SmoothdPipeline", "SmoothdMetrics", "LSHDFormat", "Zstd", "SmoothdJSON", "SmoothdTesting"]
        ),
        .testTarget(
            name: "SmoothdDaemonTests",
            dependencies: ["SmoothdDaemon", "SmoothdPipeline", "SmoothdJSON", "SmoothdMetrics", "LSHDFormat", "Zstd", "SmoothdTesting"]
        ),
        .testTarget(name: "SmoothdCLITests", dependencies: ["SmoothdJSON", "SmoothdTesting"]),
    ]
)
