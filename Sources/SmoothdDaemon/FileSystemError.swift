#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A failed system call on a file or directory, with the `errno` it set.
public struct FileSystemError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The call that failed, e.g. `rename` or `fsync`.
    public var operation: String
    /// The path (or directory-relative name) it was applied to.
    public var path: String
    /// The `errno` value.
    public var errorNumber: Int32

    /// Creates an error from an explicit `errno` value.
    public init(operation: String, path: String, errorNumber: Int32) {
        self.operation = operation
        self.path = path
        self.errorNumber = errorNumber
    }

    /// Captures the current `errno`.
    static func current(_ operation: String, _ path: String) -> FileSystemError {
        FileSystemError(operation: operation, path: path, errorNumber: errno)
    }

    /// `operation PATH: strerror(errno)`.
    public var description: String {
        "\(operation) \(path): \(String(cString: strerror(errorNumber)))"
    }
}
