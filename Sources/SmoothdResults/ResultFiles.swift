#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import SmoothdJSON

/// The file system side of reading results: what a path is, the record files of a `serve` output
/// directory, and a file's JSON. Plain POSIX calls, one read per file, so that 10,000 summaries load quickly.
enum ResultFiles {
    /// A regular file or a directory (symlinks followed, as for any command-line path).
    enum PathKind { case file, directory }

    /// The suffixes of the record files `serve` writes (SpoolStore's layout: `OUTPUT/NAME.summary.json`,
    /// `OUTPUT/NAME.error.json`; everything else there is `totals.json`, hidden files or subdirectories).
    static let recordSuffixes = [".summary.json", ".error.json"]

    /// Files larger than this are not results (a summary is a few KiB; an eval document of 100,000 shards is
    /// a few hundred MiB).
    static let maximumFileBytes = 1 << 30

    /// Cores online, for reading many files at once.
    static var onlineCores: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    static func kind(of path: String) -> Result<PathKind, ResultInputError> {
        var st = stat()
        guard stat(path, &st) == 0 else { return .failure(systemError(path, "cannot open")) }
        switch st.st_mode & S_IFMT {
        case S_IFDIR: return .success(.directory)
        case S_IFREG: return .success(.file)
        default: return .failure(ResultInputError(file: path, reason: "not a regular file or a directory"))
        }
    }

    /// The names of the directory's record files that are regular files (not followed through symlinks,
    /// which `serve` never writes), sorted by their bytes. Subdirectories are never entered.
    static func recordNames(in path: String) -> Result<[String], ResultInputError> {
        guard let dir = opendir(path) else { return .failure(systemError(path, "cannot read the directory")) }
        defer { closedir(dir) }
        let fd = dirfd(dir)
        var names: [[UInt8]] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in Array(raw.prefix { $0 != 0 }) }
            guard name.first != UInt8(ascii: "."), recordSuffixes.contains(where: { hasSuffix(name, $0) }) else { continue }
            var type = entry.pointee.d_type
            if type == UInt8(DT_UNKNOWN) {
                var st = stat()
                let found = name.withUnsafeBufferPointer { bytes in
                    (bytes.map { CChar(bitPattern: $0) } + [0]).withUnsafeBufferPointer { fstatat(fd, $0.baseAddress!, &st, AT_SYMLINK_NOFOLLOW) }
                }
                type = found == 0 && st.st_mode & S_IFMT == S_IFREG ? UInt8(DT_REG) : 0
            }
            if type == UInt8(DT_REG) { names.append(name) }
        }
        names.sort { $0.lexicographicallyPrecedes($1) }
        return .success(names.map { String(decoding: $0, as: UTF8.self) })
    }

    /// The file's bytes parsed as JSON, or why not (naming the byte offset of a syntax error, and saying when
    /// the text simply stops: a truncated file).
    static func readJSON(_ path: String) -> Result<JSONValue, ResultInputError> {
        let bytes: [UInt8]
        switch contents(of: path) {
        case .failure(let error): return .failure(error)
        case .success(let data): bytes = data
        }
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
            return .failure(ResultInputError(file: path, reason: "empty file: not JSON"))
        }
        do {
            return .success(try JSONValue.parse(utf8: bytes))
        } catch {
            let truncated = error.offset >= bytes.count
            let reason = truncated ? "not JSON: the text ends early (\(error.reason)); the file is truncated" : "not JSON: \(error.reason)"
            return .failure(ResultInputError(file: path, offset: error.offset, reason: reason))
        }
    }

    private static func contents(of path: String) -> Result<[UInt8], ResultInputError> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(systemError(path, "cannot open")) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return .failure(systemError(path, "cannot stat")) }
        guard st.st_mode & S_IFMT == S_IFREG else { return .failure(ResultInputError(file: path, reason: "not a regular file")) }
        guard Int(st.st_size) <= maximumFileBytes else {
            return .failure(ResultInputError(file: path, reason: "\(st.st_size) bytes is too large for a smoothd result (limit \(maximumFileBytes))"))
        }
        // Read to the end, not just the size stat saw: a file that grows meanwhile is read whole or seen as truncated.
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size) + 1)
        var used = 0
        while true {
            if used == bytes.count {
                guard bytes.count <= maximumFileBytes else { return .failure(ResultInputError(file: path, reason: "too large for a smoothd result")) }
                bytes += [UInt8](repeating: 0, count: bytes.count)
            }
            let n = bytes.withUnsafeMutableBytes { raw in read(fd, raw.baseAddress! + used, raw.count - used) }
            if n < 0 {
                if errno == EINTR { continue }
                return .failure(systemError(path, "cannot read"))
            }
            if n == 0 { break }
            used += n
        }
        bytes.removeSubrange(used...)
        return .success(bytes)
    }

    private static func hasSuffix(_ name: [UInt8], _ suffix: String) -> Bool {
        let s = Array(suffix.utf8)
        return name.count > s.count && name.suffix(s.count).elementsEqual(s)
    }

    private static func systemError(_ path: String, _ what: String) -> ResultInputError {
        ResultInputError(file: path, reason: "\(what): \(String(cString: strerror(errno)))")
    }
}
