import CZstd

/// A failure reported by libzstd, with the library's own error name.
public struct ZstdError: Error, Sendable, Equatable, CustomStringConvertible {
    /// libzstd's error name, e.g. "Data corruption detected" or "Restored data doesn't match checksum".
    public var name: String
    /// libzstd's stable error code (`ZSTD_ErrorCode`).
    public var code: Int

    /// Wraps a libzstd return value when it signals an error.
    static func check(_ result: Int) throws(ZstdError) -> Int {
        if ZSTD_isError(result) != 0 {
            throw ZstdError(name: String(cString: ZSTD_getErrorName(result)), code: Int(ZSTD_getErrorCode(result).rawValue))
        }
        return result
    }

    /// A frame that the decoder could not use, found while indexing frames.
    static func malformed(_ what: String) -> ZstdError {
        ZstdError(name: what, code: Int(ZSTD_error_corruption_detected.rawValue))
    }

    /// `zstd: NAME`.
    public var description: String { "zstd: \(name)" }
}
