import LSHDFormat
import SmoothdMetrics

/// A buffer of whole rows (raw logits plus labels) passed from a decoder to a worker.
///
/// `@unchecked Sendable`: a chunk is owned by one thread at a time. It moves between threads only
/// through the run's pool and work queue (`BlockingQueue`s), whose lock orders every write by one owner
/// before the next owner's reads.
final class RowChunk: @unchecked Sendable {
    let storage: UnsafeMutableRawBufferPointer
    /// Bytes of row data `storage` can hold (it is `RowKernel.readSlack` bytes longer).
    var rowCapacityBytes: Int { rowBytes * capacityRows }
    let capacityRows: Int
    let rowBytes: Int
    var labels: [Int64]
    var rowCount = 0
    /// Index of the frame group (segment) whose rows these are.
    var segment = 0
    /// The decoding attempt of that segment; results of abandoned attempts are dropped.
    var generation = 0
    /// Index in its segment of the chunk's first row (in the shard when bootstrap replicates are kept: one segment).
    var firstRow: UInt64 = 0

    init(rowBytes: Int, capacityRows: Int) {
        self.rowBytes = rowBytes
        self.capacityRows = capacityRows
        // Slack after the last row: the kernel loads whole vectors at a row's end.
        storage = .allocate(byteCount: rowBytes * capacityRows + RowKernel.readSlack, alignment: 64)
        labels = []
        labels.reserveCapacity(capacityRows)
    }

    deinit { storage.deallocate() }

    /// Empties the chunk for reuse.
    func reset() {
        rowCount = 0
        labels.removeAll(keepingCapacity: true)
    }

    /// Runs the kernel over every row and returns their accumulated metrics (bootstrap weights drawn under `seed`).
    func evaluate(header: ShardHeader, options: MetricOptions, kernel: RowKernel.BatchFunction, seed: UInt64) -> MetricAccumulator {
        var accumulator = MetricAccumulator(options: options)
        let base = UnsafeRawPointer(storage.baseAddress!)
        let ignore = header.ignoreIndex
        let batch = 256
        let statistics = UnsafeMutablePointer<RowStatistics>.allocate(capacity: batch)
        defer { statistics.deallocate() }
        let sweep = options.temperatures.isEmpty ? nil : TemperatureSweep(header: header, rowBytes: rowBytes, betas: accumulator.temperatures.map { 1 / $0 }, batch: batch)
        labels.withUnsafeBufferPointer { labels in
            var start = 0
            while start < rowCount {
                let count = min(batch, rowCount - start)
                kernel(base + start * rowBytes, header.numClasses, rowBytes, labels.baseAddress! + start, count, ignore, statistics)
                accumulator.add(statistics, labels: labels.baseAddress! + start, count: count, ignoreIndex: ignore)
                accumulator.bootstrap?.add(rows: statistics, labels: labels.baseAddress! + start, count: count, ignoreIndex: ignore,
                                           firstRow: firstRow + UInt64(start), seed: seed, topK: options.topK)
                if let sweep { sweep.add(base + start * rowBytes, labels.baseAddress! + start, count, statistics, &accumulator) }
                start += count
            }
        }
        return accumulator
    }
}
