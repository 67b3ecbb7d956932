import Foundation
import LSHDFormat
import SmoothdTesting
import Zstd

/// Writes synthetic LSHD shards for benchmarks and the large-shard memory test.
struct SyntheticShard {
    var numClasses: Int
    var rows: Int
    var dtype: LogitDType
    var rowsPerBlock: Int
    /// Frames to split the stream into (at block boundaries); 1 = one frame.
    var frames = 1
    var level: Int32 = 3
    /// Repeat one block of data (compresses ~1000×, for multi-GiB payloads written in seconds).
    var repetitive = false
    /// Fraction of rows whose label is ignore_index (-100).
    var ignoredFraction = 0.05
    var seed: UInt64 = 1

    /// Writes the shard to `path` and returns its compressed size.
    func write(to path: String) throws -> UInt64 {
        let fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw BenchError("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let encoder = ZstdCompressor(level: level)
        var written: UInt64 = 0
        let emitCompressed: (UnsafeRawBufferPointer) throws -> Void = { bytes in
            var done = 0
            while done < bytes.count {
                let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
                guard n > 0 else { throw BenchError("write failed: \(String(cString: strerror(errno)))") }
                done += n
            }
            written += UInt64(bytes.count)
        }
        let header = ShardHeader(logitDType: dtype, labelDType: .int64, numClasses: numClasses, ignoreIndex: -100,
                                 statedRows: UInt64(rows))
        var writer = try ShardPayloadWriter(header: header, metaText: "{\"generator\":\"smoothd-bench\"}") { bytes in
            try encoder.write(bytes, to: emitCompressed)
        }
        var rng = SplitMix(state: seed)
        let blocks = (rows + rowsPerBlock - 1) / rowsPerBlock
        let blocksPerFrame = max(1, (blocks + frames - 1) / frames)
        var cachedBlock: (labels: [Int64], bytes: [UInt8])?
        for block in 0..<blocks {
            let count = min(rowsPerBlock, rows - block * rowsPerBlock)
            let data: (labels: [Int64], bytes: [UInt8])
            if repetitive, let cached = cachedBlock, cached.labels.count == count {
                data = cached
            } else {
                data = makeBlock(rows: count, rng: &rng)
                if repetitive { cachedBlock = data }
            }
            try data.bytes.withUnsafeBytes { try writer.writeBlock(labels: data.labels, logitBytes: $0) }
            if (block + 1) % blocksPerFrame == 0 && block + 1 < blocks { try encoder.endFrame(to: emitCompressed) }
        }
        try writer.finish()
        try encoder.endFrame(to: emitCompressed)
        return written
    }

    /// Logits ≈ N(0, 2) with the gold class lifted by 4 in about half of the rows.
    func makeBlock(rows: Int, rng: inout SplitMix) -> (labels: [Int64], bytes: [UInt8]) {
        var labels = [Int64](repeating: 0, count: rows)
        var logits = [Float](repeating: 0, count: rows * numClasses)
        for r in 0..<rows {
            let label = Int(rng.next() % UInt64(numClasses))
            labels[r] = rng.unit() < ignoredFraction ? -100 : Int64(label)
            for k in 0..<numClasses { logits[r * numClasses + k] = rng.roughNormal() * 2 }
            if rng.unit() < 0.5 { logits[r * numClasses + label] += 4 }
        }
        return (labels, LogitEncoding.encode(logits, as: dtype))
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
