import Testing
@testable import Zstd
#if canImport(Glibc)
import Glibc
#endif

/// Decodes `compressed` through an output window of `outputSize` bytes and input slices of `inputSize`.
func decodeAll(_ compressed: [UInt8], inputSize: Int, outputSize: Int) throws -> [UInt8] {
    let decoder = ZstdDecompressor()
    var result: [UInt8] = []
    var output = [UInt8](repeating: 0, count: outputSize)
    var start = 0
    while start < compressed.count {
        let end = min(compressed.count, start + inputSize)
        try compressed[start..<end].withUnsafeBytes { input in
            var inPos = 0
            repeat {
                var outPos = 0
                try output.withUnsafeMutableBytes { try decoder.decompress(input: input, inputPosition: &inPos, output: $0, outputPosition: &outPos) }
                result.append(contentsOf: output[0..<outPos])
            } while inPos < input.count || !decoder.isAtFrameBoundary && result.count < 0
        }
        start = end
    }
    // Drain anything still buffered inside the decoder.
    while true {
        var outPos = 0
        var inPos = 0
        try output.withUnsafeMutableBytes { out in
            try [UInt8]().withUnsafeBytes { try decoder.decompress(input: $0, inputPosition: &inPos, output: out, outputPosition: &outPos) }
        }
        if outPos == 0 { break }
        result.append(contentsOf: output[0..<outPos])
    }
    return result
}

@Test func roundTripThroughTinyBuffers() throws {
    let payload = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }
    let frame = try ZstdCompressor.compressFrame(payload)
    for (inSize, outSize) in [(1, 1), (7, 3), (4096, 1), (1 << 20, 1 << 17)] {
        #expect(try decodeAll(frame + frame, inputSize: inSize, outputSize: outSize) == payload + payload)
    }
}

@Test func corruptFrameNamesTheZstdError() throws {
    var frame = try ZstdCompressor.compressFrame([UInt8](repeating: 7, count: 10_000) + (0..<5000).map { UInt8($0 % 251) })
    frame[frame.count - 1] ^= 0xFF  // the content checksum's last byte
    #expect {
        _ = try decodeAll(frame, inputSize: 1 << 16, outputSize: 1 << 17)
    } throws: { error in
        (error as? ZstdError)?.name.lowercased().contains("checksum") == true
    }
}

@Test func frameIndexFindsEveryFrame() throws {
    let a = try ZstdCompressor.compressFrame([UInt8](repeating: 1, count: 300_000))
    let b = try ZstdCompressor.compressFrame(Array("hello".utf8))
    let skippable: [UInt8] = [0x50, 0x2A, 0x4D, 0x18, 3, 0, 0, 0, 9, 9, 9]
    let file = a + skippable + b
    let path = "/tmp/smoothd-frameindex-\(getpid()).zst"
    let fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0o600)
    defer { close(fd); unlink(path) }
    _ = file.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    let frames = try #require(ZstdFrameIndex.scan(fileDescriptor: fd, size: UInt64(file.count)))
    #expect(frames.map(\.offset) == [0, UInt64(a.count), UInt64(a.count + skippable.count)])
    #expect(frames.map(\.contentSize) == [300_000, 0, 5])
    #expect(frames.map(\.isSkippable) == [false, true, false])
    #expect(ZstdFrameIndex.scan(fileDescriptor: fd, size: UInt64(file.count - 1)) == nil)
}
