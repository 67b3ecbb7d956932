// smoothd's libFuzzer target: arbitrary bytes into the shard reader and the metric pipeline.
//
// `Scripts/fuzz` builds it with `-sanitize=fuzzer,address -D SMOOTHD_LIBFUZZER`; then this file hands
// `main` to libFuzzer (`LLVMFuzzerRunDriver`), and every libFuzzer flag works. SwiftPM links executables
// with `--defsym main=SmoothdFuzz_main`, which shadows libFuzzer's own `main`, hence the explicit call.
//
// A plain `swift build` builds it without libFuzzer: it then runs the files named on its command line
// through the same checks, once each (`SmoothdFuzz crash-1234 Fixtures/fuzz-regressions/*`), and exits
// non-zero at the first violated invariant.
#if canImport(Glibc)
import Glibc
#endif

@_cdecl("LLVMFuzzerTestOneInput")
public func smoothdFuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    FuzzHarness.run(UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size))
}

#if SMOOTHD_LIBFUZZER
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { smoothdFuzzTestOneInput($0, $1) })
#else
let paths = CommandLine.arguments.dropFirst()
if paths.isEmpty || paths.contains("-h") || paths.contains("--help") {
    print("usage: SmoothdFuzz FILE…  (runs each fuzz input once; build with Scripts/fuzz for libFuzzer)")
    exit(paths.isEmpty ? 64 : 0)
}
FuzzHarness.showEntry = { print($0.serialized()) }
for path in paths {
    guard let file = fopen(path, "rb") else {
        writeError("SmoothdFuzz: cannot open \(path)\n")
        exit(66)
    }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = fread(&buffer, 1, buffer.count, file)
        if n <= 0 { break }
        bytes += buffer[0..<n]
    }
    fclose(file)
    let status = bytes.withUnsafeBytes { smoothdFuzzTestOneInput($0.baseAddress?.assumingMemoryBound(to: UInt8.self), $0.count) }
    print("\(path): \(bytes.count) bytes, \(status == 0 ? "ok" : "rejected (not a useful input)")")
}
#endif
