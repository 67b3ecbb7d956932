#if canImport(Glibc)
import Glibc
#endif

/// Where one zstd frame lies in a compressed file.
public struct ZstdFrameExtent: Sendable, Equatable {
    /// Byte offset of the frame in the compressed file.
    public var offset: UInt64
    /// Compressed size of the whole frame, checksum included.
    public var compressedSize: UInt64
    /// Decompressed size from the frame header, when the writer stated it.
    public var contentSize: UInt64?
    /// True for skippable frames, which decode to nothing.
    public var isSkippable: Bool
}

/// Finds frame boundaries by walking frame and block headers with small reads, so indexing
/// a large file costs a few reads per 128 KiB block and no memory that grows with the file.
public enum ZstdFrameIndex {
    /// Lists the frames of the file open at `fd` (`size` bytes). Returns nil when the bytes are not a
    /// clean sequence of zstd frames; the caller then decodes sequentially and reports the decoder's error.
    public static func scan(fileDescriptor fd: Int32, size: UInt64) -> [ZstdFrameExtent]? {
        var reader = SmallReader(fd: fd, size: size)
        var frames: [ZstdFrameExtent] = []
        var offset: UInt64 = 0
        while offset < size {
            guard let magic = reader.u32(at: offset) else { return nil }
            if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
                guard let length = reader.u32(at: offset + 4) else { return nil }
                let total = 8 + UInt64(length)
                guard offset + total <= size else { return nil }
                frames.append(ZstdFrameExtent(offset: offset, compressedSize: total, contentSize: 0, isSkippable: true))
                offset += total
                continue
            }
            guard magic == 0xFD2F_B528, let descriptor = reader.byte(at: offset + 4) else { return nil }
            let contentSizeFlag = descriptor >> 6
            let singleSegment = (descriptor >> 5) & 1 == 1
            let hasChecksum = (descriptor >> 2) & 1 == 1
            let dictionaryIDSize = [0, 1, 2, 4][Int(descriptor & 3)]
            let contentSizeBytes = [singleSegment ? 1 : 0, 2, 4, 8][Int(contentSizeFlag)]
            let contentSizeAt = offset + 5 + (singleSegment ? 0 : 1) + UInt64(dictionaryIDSize)
            var contentSize: UInt64?
            if contentSizeBytes > 0 {
                guard var value = reader.little(at: contentSizeAt, count: contentSizeBytes) else { return nil }
                if contentSizeBytes == 2 { value += 256 }  // the format stores size - 256 in two bytes
                contentSize = value
            }
            var cursor = contentSizeAt + UInt64(contentSizeBytes)
            while true {
                guard let header = reader.little(at: cursor, count: 3) else { return nil }
                let isLast = header & 1 == 1
                let blockType = (header >> 1) & 3
                let blockSize = header >> 3
                cursor += 3
                switch blockType {
                case 0, 2: cursor += blockSize  // raw or compressed
                case 1: cursor += 1  // RLE: one byte repeated
                default: return nil  // reserved block type
                }
                guard cursor <= size else { return nil }
                if isLast { break }
            }
            if hasChecksum { cursor += 4 }
            guard cursor <= size else { return nil }
            frames.append(ZstdFrameExtent(offset: offset, compressedSize: cursor - offset, contentSize: contentSize, isSkippable: false))
            offset = cursor
        }
        return frames
    }
}

/// A tiny read-through cache over `pread`, enough for header walking.
private struct SmallReader {
    let fd: Int32
    let size: UInt64
    var buffer = [UInt8](repeating: 0, count: 4096)
    var bufferStart: UInt64 = 0
    var bufferCount = 0

    init(fd: Int32, size: UInt64) { self.fd = fd; self.size = size }

    mutating func byte(at offset: UInt64) -> UInt8? {
        guard offset < size else { return nil }
        if offset < bufferStart || offset >= bufferStart + UInt64(bufferCount) {
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
            guard n > 0 else { return nil }
            bufferStart = offset
            bufferCount = n
        }
        return buffer[Int(offset - bufferStart)]
    }

    mutating func little(at offset: UInt64, count: Int) -> UInt64? {
        var value: UInt64 = 0
        for i in 0..<count {
            guard let b = byte(at: offset + UInt64(i)) else { return nil }
            value |= UInt64(b) << (8 * UInt64(i))
        }
        return value
    }

    mutating func u32(at offset: UInt64) -> UInt32? { little(at: offset, count: 4).map { UInt32($0) } }
}
