import SmoothdJSON

/// True when `actual` is within `relative` (or `absolute`) of `expected`, or both are null or absent:
/// how tests compare smoothd's numbers with the NumPy references' (counts are compared exactly instead).
public func close(_ actual: JSONValue?, _ expected: JSONValue?, relative: Double, absolute: Double = 0) -> Bool {
    switch (actual?.doubleValue, expected?.doubleValue) {
    case (nil, nil): return (actual == nil || actual == .null) && (expected == nil || expected == .null)
    case (let a?, let e?): return abs(a - e) <= max(relative * abs(e), absolute)
    default: return false
    }
}
