import Foundation
import LSHDFormat
import SmoothdJSON
import Testing
import Zstd

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures")

/// Decompresses a fixture with the streaming decoder.
func payload(of name: String) throws -> [UInt8] {
    let compressed = Array(try Data(contentsOf: fixtures.appendingPathComponent(name)))
    let decoder = ZstdDecompressor()
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    try compressed.withUnsafeBytes { input in
        var inPos = 0
        while true {
            var outPos = 0
            try buffer.withUnsafeMutableBytes { try decoder.decompress(input: input, inputPosition: &inPos, output: $0, outputPosition: &outPos) }
            out += buffer[0..<outPos]
            if inPos == input.count && outPos < buffer.count { break }
        }
    }
    return out
}

/// A sink that copies every row out, with spaces of `rowsPerSpace` rows. Call `release()` when done.
struct CollectingSink: ShardRowSink {
    let rowsPerSpace: Int
    var space = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    var rows: [[UInt8]] = []
    var labels: [Int64] = []

    mutating func rowSpace(for header: ShardHeader) -> UnsafeMutableRawBufferPointer {
        space.deallocate()
        space = .allocate(byteCount: rowsPerSpace * header.rowLogitBytes, alignment: 16)
        return space
    }

    /// Frees the last space.
    mutating func release() {
        space.deallocate()
        space = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    }

    mutating func rowsFilled(labels filled: UnsafeBufferPointer<Int64>) {
        let rowBytes = space.count / rowsPerSpace
        for i in 0..<filled.count { rows.append(Array(space[(i * rowBytes)..<((i + 1) * rowBytes)])) }
        labels += filled
    }
}

/// Lets `parser` fill `bytes` in writes of at most `piece` bytes, then finishes; releases the sink's space.
func feed(_ parser: inout ShardParser, _ bytes: [UInt8], piece: Int, into sink: inout CollectingSink) throws(ShardError) {
    defer { sink.release() }
    let staging = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, min(piece, bytes.count)), alignment: 16)
    defer { staging.deallocate() }
    var failure: ShardParseError?
    bytes.withUnsafeBytes { raw in
        var rest = raw[...]
        do throws(ShardParseError) {
            while !rest.isEmpty {
                _ = try parser.fill(into: &sink, staging: staging) { space in
                    let take = min(space.count, piece, rest.count)
                    space.baseAddress!.copyMemory(from: UnsafeRawBufferPointer(rebasing: rest).baseAddress!, byteCount: take)
                    rest = rest.dropFirst(take)
                    return take
                }
            }
        } catch {
            failure = error
        }
    }
    switch failure {
    case .invalid(let error): throw error
    case .sourceFailed(let error): preconditionFailure("an in-memory reader failed: \(error)")
    case nil: try parser.finish(into: &sink)
    }
}

/// Parses `bytes` in pieces of `piece` bytes into a sink with spaces of `rowsPerSpace` rows.
func parse(_ bytes: [UInt8], piece: Int, rowsPerSpace: Int) throws(ShardError) -> (ShardHeader?, CollectingSink) {
    var parser = ShardParser()
    var sink = CollectingSink(rowsPerSpace: rowsPerSpace)
    try feed(&parser, bytes, piece: piece, into: &sink)
    return (parser.header, sink)
}

@Test(arguments: ["valid/k2.lshd.zst", "valid/f16_ignore0.lshd.zst", "valid/frames_split_anywhere.lshd.zst",
                  "valid/bf16_k32000.lshd.zst", "valid/zero_rows.lshd.zst"])
func sameRowsWhateverTheBufferSizes(_ name: String) throws {
    let bytes = try payload(of: name)
    let (header, whole) = try parse(bytes, piece: bytes.count, rowsPerSpace: 1000)
    let expected = expectedCounts(name)
    #expect(UInt64(whole.rows.count) == expected.rows)
    #expect(header?.numClasses == expected.k)
    let pieces = name.contains("k32000") ? [1, 4097, 65536] : [1, 2, 3, 7, 64, 4096]
    for piece in pieces {
        for rowsPerSpace in [1, 3, 64] {
            let (h, sink) = try parse(bytes, piece: piece, rowsPerSpace: rowsPerSpace)
            #expect(h == header)
            #expect(sink.labels == whole.labels, "piece \(piece) space \(rowsPerSpace)")
            #expect(sink.rows == whole.rows, "piece \(piece) space \(rowsPerSpace)")
        }
    }
}

/// Row count and K from the reference's expected.json.
func expectedCounts(_ name: String) -> (rows: UInt64, k: Int) {
    let doc = try! JSONValue.parse(utf8: try! Data(contentsOf: fixtures.appendingPathComponent("expected.json")))
    let entry = doc["valid"]!.arrayValue!.first { $0["file"]?.stringValue == name }!
    return (UInt64(entry["rows"]!.intValue!), Int(entry["num_classes"]!.intValue!))
}

@Test func errorsAreFoundAtTheSameOffsetOneByteAtATime() throws {
    let doc = try JSONValue.parse(utf8: try Data(contentsOf: fixtures.appendingPathComponent("expected.json")))
    for fixture in doc["invalid"]!.arrayValue! where fixture["kind"]?.stringValue != "zstd_error" {
        let name = fixture["file"]!.stringValue!
        let bytes = try payload(of: name)
        for piece in [1, 5, bytes.count + 1] {
            #expect(throws: ShardError.self, "\(name)") {
                _ = try parse(bytes, piece: piece, rowsPerSpace: 2)
            }
            do {
                _ = try parse(bytes, piece: piece, rowsPerSpace: 2)
            } catch {
                #expect(error.kind == ShardRule(rawValue: fixture["kind"]!.stringValue!), "\(name): \(error)")
                #expect(error.offset.map { Int64($0) } == fixture["offset"]!.intValue, "\(name) piece \(piece): \(error)")
            }
        }
    }
}

@Test func writerOutputParsesBack() throws {
    var bytes: [UInt8] = []
    let header = ShardHeader(logitDType: .bfloat16, labelDType: .int32, numClasses: 3, ignoreIndex: -1, statedRows: 2)
    var writer = try ShardPayloadWriter(header: header, metaText: "{\"model\":\"x\"}") { bytes += $0 }
    try writer.writeBlock(labels: [2, -1], logits: [1, 2, 3, 4, 5, 6])
    try writer.finish()
    let (parsed, sink) = try parse(bytes, piece: 3, rowsPerSpace: 1)
    #expect(parsed?.meta == .object([("model", .string("x"))]))
    #expect(parsed?.statedRows == 2)
    #expect(sink.labels == [2, -1])
    // bfloat16 of 3.0 is 0x4040
    #expect(sink.rows[0][4...5] == [0x40, 0x40])
}

@Test func bfloat16RoundsToNearestEven() {
    #expect(LogitEncoding.bfloat16Bits(1.0) == 0x3F80)
    #expect(LogitEncoding.bfloat16Bits(Float(bitPattern: 0x3F80_8000)) == 0x3F80)  // tie, even stays
    #expect(LogitEncoding.bfloat16Bits(Float(bitPattern: 0x3F81_8000)) == 0x3F82)  // tie, odd rounds up
    #expect(LogitEncoding.bfloat16Bits(.nan) & 0x7FC0 == 0x7FC0)
}

/// Serves labels from the payload in memory, as the pipeline's second decoder does from the file.
final class InMemoryPayloadReader: PayloadRangeReader {
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        let start = min(Int(offset), bytes.count)
        let count = min(buffer.count, bytes.count - start)
        bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + start, byteCount: count) }
        return count
    }
}

/// Parses with labels re-read through a reader (as for blocks whose labels exceed the memory limit).
func parseWithLabelReader(_ bytes: [UInt8], available: Int? = nil, piece: Int) throws(ShardError) -> CollectingSink {
    var parser = ShardParser()
    parser.labelMemoryLimit = 8
    parser.labelReader = InMemoryPayloadReader(Array(bytes.prefix(available ?? bytes.count)))
    var sink = CollectingSink(rowsPerSpace: 5)
    try feed(&parser, bytes, piece: piece, into: &sink)
    return sink
}

@Test func labelsReadThroughAReaderGiveTheSameRows() throws {
    for name in ["valid/num_rows_stated.lshd.zst", "valid/k2.lshd.zst", "valid/f16_ignore0.lshd.zst"] {
        let bytes = try payload(of: name)
        let (_, whole) = try parse(bytes, piece: bytes.count, rowsPerSpace: 64)
        for piece in [3, 999, bytes.count] {
            let sink = try parseWithLabelReader(bytes, piece: piece)
            #expect(sink.labels == whole.labels, "\(name) piece \(piece)")
            #expect(sink.rows == whole.rows, "\(name) piece \(piece)")
        }
    }
}

@Test func labelErrorsThroughAReaderKeepTheirOffsets() throws {
    let doc = try JSONValue.parse(utf8: try Data(contentsOf: fixtures.appendingPathComponent("expected.json")))
    for fixture in doc["invalid"]!.arrayValue! where ["label_out_of_range", "truncated"].contains(fixture["kind"]!.stringValue!) {
        let name = fixture["file"]!.stringValue!
        let bytes = try payload(of: name)
        do {
            _ = try parseWithLabelReader(bytes, piece: 7)
            Issue.record("\(name) accepted")
        } catch {
            #expect(error.kind == ShardRule(rawValue: fixture["kind"]!.stringValue!), "\(name): \(error)")
            #expect(error.offset.map { Int64($0) } == fixture["offset"]!.intValue, "\(name): \(error)")
        }
    }
}
