import SmoothdJSON

/// Header and fixed fields: checked as their bytes arrive.
extension ShardParser {
    /// Validates header fields as soon as their bytes arrive, so the first broken rule wins.
    mutating func checkHeaderPrefix() throws(ShardError) {
        let n = fieldBytes.count
        if n >= 4, fieldBytes[0..<4] != [0x4C, 0x53, 0x48, 0x44] {
            throw ShardError(.badMagic, at: 0, "not an LSHD payload (magic \(hexBytes(fieldBytes[0..<4])), expected \"LSHD\")")
        }
        if n >= 6 {
            let version = UInt16(littleEndianBytes: fieldBytes[4..<6])
            if version != ShardHeader.supportedVersion {
                throw ShardError(.unsupportedVersion, at: 4, "unsupported version \(version) (this reader knows version 1)")
            }
        }
        if n >= 7, LogitDType(rawValue: fieldBytes[6]) == nil {
            throw ShardError(.unknownLogitDType, at: 6, "unknown logit dtype code \(fieldBytes[6]) (1 = float32, 2 = float16, 3 = bfloat16)")
        }
        if n >= 8, LabelDType(rawValue: fieldBytes[7]) == nil {
            throw ShardError(.unknownLabelDType, at: 7, "unknown label dtype code \(fieldBytes[7]) (1 = int32, 2 = int64)")
        }
        if n >= 12 {
            let k = UInt32(littleEndianBytes: fieldBytes[8..<12])
            if !ShardHeader.classCountRange.contains(Int(k)) {
                throw ShardError(.numClassesOutOfRange, at: 8, "num_classes \(k) out of range [2, 16777216]")
            }
        }
        if n >= 16 {
            let m = UInt32(littleEndianBytes: fieldBytes[12..<16])
            if Int(m) > ShardHeader.maximumMetaLength {
                throw ShardError(.metaTooLong, at: 12, "meta_len \(m) exceeds 1048576")
            }
        }
    }

    mutating func completeField(into sink: inout some ShardRowSink) throws(ShardError) {
        switch phase {
        case .header:
            let k = Int(UInt32(littleEndianBytes: fieldBytes[8..<12]))
            metaLength = Int(UInt32(littleEndianBytes: fieldBytes[12..<16]))
            let stated = UInt64(littleEndianBytes: fieldBytes[24..<32])
            header = ShardHeader(
                logitDType: LogitDType(rawValue: fieldBytes[6])!, labelDType: LabelDType(rawValue: fieldBytes[7])!,
                numClasses: k, ignoreIndex: Int64(bitPattern: UInt64(littleEndianBytes: fieldBytes[16..<24])),
                statedRows: stated == 0 ? nil : stated, meta: nil, metaLength: metaLength)
            startField(metaLength > 0 ? .meta : .blockHeader, size: metaLength > 0 ? metaLength : 4)
        case .meta:
            let metaStart = UInt64(ShardHeader.fixedSize)
            let value: JSONValue
            do {
                value = try JSONValue.parse(utf8: fieldBytes)
            } catch {
                throw ShardError(.metaNotJSONObject, at: metaStart, "meta is not valid JSON (\(error.reason) at byte \(error.offset) of meta)")
            }
            guard case .object = value else {
                throw ShardError(.metaNotJSONObject, at: metaStart, "meta is JSON but not an object")
            }
            header?.meta = value
            startField(.blockHeader, size: 4)
        case .blockHeader:
            let count = UInt32(littleEndianBytes: fieldBytes[0..<4])
            let markerOffset = offset - 4
            if count == 0 {
                phase = .finished
                endMarkerOffset = markerOffset
                flushRows(into: &sink)
                if verifiesRowCount, let stated = header?.statedRows, stated != rows {
                    throw ShardError(.numRowsMismatch, at: markerOffset, "header states num_rows \(stated) but the shard holds \(rows) rows")
                }
                return
            }
            guard let header else { preconditionFailure("block before header") }
            blockRows = Int(count)
            rowInBlock = 0
            labelBytesLeft = blockRows * header.labelDType.byteWidth
            blockLogitBytesLeft = blockRows * header.rowLogitBytes
            blockLabels.removeAll(keepingCapacity: true)
            labelWindowStart = 0
            blockLabelsOffset = offset
            fieldBytes.removeAll(keepingCapacity: true)
            labelsViaReader = labelReader != nil && labelBytesLeft > labelMemoryLimit
            if labelsViaReader {
                phase = .skippingLabels
            } else {
                blockLabels.reserveCapacity(blockRows)
                phase = .labels
            }
        case .labels, .skippingLabels, .logits, .finished:
            preconditionFailure("not a fixed field")
        }
    }

    mutating func startField(_ next: Phase, size: Int) {
        phase = next
        fieldNeeded = size
        fieldBytes.removeAll(keepingCapacity: true)
        fieldBytes.reserveCapacity(size)
    }
}

func hexBytes(_ bytes: ArraySlice<UInt8>) -> String {
    bytes.map { let h = String($0, radix: 16); return h.count == 1 ? "0" + h : h }.joined(separator: " ")
}

extension FixedWidthInteger {
    /// Reads a little-endian integer from exactly `MemoryLayout<Self>.size` bytes.
    init(littleEndianBytes bytes: ArraySlice<UInt8>) {
        var value: Self = 0
        for (i, b) in bytes.enumerated() { value |= Self(b) << (8 * i) }
        self = value
    }
}
