// ThreadSanitizer does not see Synchronization.Mutex on Linux (Swift 6.3.1): this correct program is
// reported as racing. Why Fuzz/tsan-suppressions.txt exists:
//
//   swiftc -sanitize=thread Fuzz/tsan-mutex-false-positive.swift -o /tmp/mutex && /tmp/mutex
//   -> WARNING: ThreadSanitizer: Swift access race … / data race …, then 4000
import Synchronization
import Foundation

final class Box: Sendable {
    let state = Mutex<[Int]>([])
}
let box = Box()
let group = DispatchGroup()
for t in 0..<2 {
    let thread = Thread {
        for i in 0..<2000 { box.state.withLock { $0.append(i + t) } }
        group.leave()
    }
    group.enter()
    thread.start()
}
group.wait()
print(box.state.withLock { $0.count })
