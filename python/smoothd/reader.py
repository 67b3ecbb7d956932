"""read_shard: a strict streaming reader of LSHD v1 shards, with smoothd's error kinds and offsets."""
from __future__ import annotations

import contextlib
import json
import os
import struct

import numpy as np
import zstandard

from .format import HEADER, HEADER_SIZE, LABEL_CODES, LOGIT_CODES, MAX_META_DEPTH, MAX_META_LEN, MAX_NUM_CLASSES

__all__ = ["read_shard", "Shard", "ShardError", "widen_logits"]

# smoothd refuses frames whose window exceeds 8 MiB (docs/SHARD-FORMAT.md), whatever its settings.
MAX_WINDOW_BYTES = 1 << 23
_READ_BYTES = 1 << 20
_ZSTD_MAGIC = 0xFD2FB528
_SKIPPABLE_MASK, _SKIPPABLE_MAGIC = 0xFFFFFFF0, 0x184D2A50


class ShardError(Exception):
    """An invalid shard: ``kind`` (smoothd's stable name), ``offset`` (payload byte offset, None for
    ``io_error``) and ``reason``; ``path`` names the file."""

    def __init__(self, path, kind: str, offset: int | None, reason: str):
        where = f" at offset {offset}" if offset is not None else ""
        super().__init__(f"{path}: {kind}{where}: {reason}")
        self.path, self.kind, self.offset, self.reason = os.fspath(path), kind, offset, reason


def widen_logits(raw: np.ndarray, logit_dtype: str) -> np.ndarray:
    """Stored logits -> float32, exactly (half precision widens without rounding; NaN and ±Inf kept)."""
    if logit_dtype == "bfloat16":
        return (raw.astype(np.uint32) << np.uint32(16)).view(np.float32)
    return raw.astype(np.float32)


class _Payload:
    """The decompressed payload as a byte stream with a position, and smoothd's zstd rules.

    Input goes to the decoder one zstd block at a time (a block never decodes to more than 128 KiB),
    so a decompression bomb cannot make one call return gigabytes. Frames are decoded one at a time, so
    a file that ends inside a frame is noticed. zstd errors get the offset smoothd gives (see _error_offset).
    """

    def __init__(self, path, f):
        self._path = path
        self._f = f
        self._dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW_BYTES)
        self._dobj = None  # decoder of the frame in progress
        self._input = b""  # compressed bytes not yet fed
        self._eof = False
        self._buf = b""  # decoded payload; self._buf[self._off:] is not yet consumed
        self._off = 0
        self.pos = 0  # payload bytes consumed
        self._checksum = 0  # checksum bytes after the last block of the frame in progress
        self._block_starts = []  # payload offset where each block of that frame began

    def error(self, kind, offset, reason):
        return ShardError(self._path, kind, offset, reason)

    def _more_input(self) -> bool:
        if self._eof:
            return False
        data = self._f.read(_READ_BYTES)
        if not data:
            self._eof = True
            return False
        self._input += data
        return True

    def _next_feed(self):
        """(bytes to feed next, whether that is a whole unit): a frame header with its first block, one
        block, or the last block with the checksum after it. Bytes that cannot be walked (not zstd) are
        fed as they are: the decoder reports them."""
        data = self._input
        if self._dobj is None:  # at a frame start
            if len(data) < 8:
                return len(data), False
            (magic,) = struct.unpack_from("<I", data)
            if magic & _SKIPPABLE_MASK == _SKIPPABLE_MAGIC:
                end = 8 + struct.unpack_from("<I", data, 4)[0]
                return min(end, len(data)), end <= len(data)
            if magic != _ZSTD_MAGIC:
                return len(data), True
            fhd = data[4]
            single = (fhd >> 5) & 1
            header = 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + ((1 if single else 0), 2, 4, 8)[fhd >> 6]
            self._checksum = 4 if (fhd >> 2) & 1 else 0
            return self._block_feed(header)
        return self._block_feed(0)

    def _block_feed(self, at: int):
        data = self._input
        if len(data) < at + 3:
            return len(data), False
        b = data[at] | data[at + 1] << 8 | data[at + 2] << 16
        last, kind, size = b & 1, (b >> 1) & 3, b >> 3
        end = at + 3 + (1 if kind == 1 else size) + (self._checksum if last else 0)
        return min(end, len(data)), end <= len(data)

    def _fill(self) -> bool:
        """Decode more payload into the buffer; False at the clean end of the stream."""
        while self._off == len(self._buf):
            if not self._input and not self._more_input():
                if self._dobj is not None:
                    raise self.error("truncated", self.pos,
                                     "compressed stream ends inside a zstd frame (payload ends before the end marker)")
                return False
            n, whole = self._next_feed()
            if not whole and self._more_input():
                continue  # a block cut by the read buffer: read on before feeding it
            data, self._input = self._input[:n], self._input[n:]
            if self._dobj is None:
                self._dobj = self._dctx.decompressobj()
                self._block_starts = []
            self._block_starts.append(self.pos)
            try:
                self._buf, self._off = self._dobj.decompress(data), 0
            except zstandard.ZstdError as e:
                raise self.error("zstd_error", self._error_offset(_zstd_name(e)), "zstd: " + _zstd_name(e)) from None
            if self._dobj.eof:
                self._input = self._dobj.unused_data + self._input
                self._dobj = None
        return True

    def _error_offset(self, name: str) -> int:
        """The offset smoothd reports for a zstd error in the block just fed.

        smoothd's decoder call that flushes block k-1 into its 128 KiB output also decodes block k, and the
        output of a failing call is dropped: an error in block k is reported where block k-1 began (the
        frame's start for its first block). A checksum is checked right after the last block.
        """
        starts = self._block_starts
        if "checksum" in name or len(starts) < 2:
            return starts[-1]
        return starts[-2]

    def read(self, n: int) -> bytes:
        """Up to n bytes; fewer only at the end of the stream."""
        parts, got = [], 0
        while got < n and self._fill():
            take = min(n - got, len(self._buf) - self._off)
            parts.append(self._buf[self._off:self._off + take] if take < len(self._buf) else self._buf)
            self._off += take
            got += take
            self.pos += take
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def exact(self, n: int, inside: str) -> bytes:
        """Exactly n bytes, or `truncated` saying what the payload ended inside."""
        b = self.read(n)
        if len(b) != n:
            raise self.error("truncated", self.pos, f"payload ends inside {inside} (no end marker)")
        return b


def _zstd_name(e: zstandard.ZstdError) -> str:
    text = str(e)
    for prefix in ("zstd decompress error: ", "zstd decompressor error: "):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


def _check_meta(payload: _Payload, meta: bytes):
    def bad(reason):
        return payload.error("meta_not_json_object", HEADER_SIZE, reason)

    try:
        text = meta.decode("utf-8")
    except UnicodeDecodeError as e:
        raise bad(f"meta is not valid JSON (invalid UTF-8 at byte {e.start} of meta)") from None

    def no_constants(name):  # Python accepts NaN/Infinity; JSON does not
        raise ValueError(f"{name} is not JSON")

    try:
        value = json.loads(text, parse_constant=no_constants)
    except RecursionError:
        raise bad(f"meta is not valid JSON (nested deeper than {MAX_META_DEPTH})") from None
    except ValueError as e:
        raise bad(f"meta is not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise bad("meta is JSON but not an object")
    problem = _strict_json_problem(value, 1)
    if problem:
        raise bad(f"meta is not valid JSON ({problem})")
    return value


def _strict_json_problem(value, depth):
    """What smoothd's strict parser refuses that Python's json accepts: lone surrogates, deep nesting."""
    if depth > MAX_META_DEPTH:
        return f"JSON nested deeper than {MAX_META_DEPTH}"
    if isinstance(value, str):
        return "unpaired surrogate in string" if any(0xD800 <= ord(c) <= 0xDFFF for c in value) else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        problem = (_strict_json_problem(k, depth) if isinstance(k, str) else None) or _strict_json_problem(v, depth + 1)
        if problem:
            return problem
    return None


class Shard:
    """An opened shard: header facts at once, rows through blocks() (each call reads the file again).

    ``num_rows`` is the header's stated row count (blocks() checks it); when the writer did not state it,
    the first access counts the rows with a validating pass over the file.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        with self._open() as (payload, header):
            self.num_classes = header["num_classes"]
            self.logit_dtype = header["logit_dtype"]
            self.label_dtype = header["label_dtype"]
            self.ignore_index = header["ignore_index"]
            self.meta = header["meta"]
            self._stated_rows = header["num_rows"]
        self._counted_rows = None

    def __repr__(self):
        return (f"Shard({self.path!r}, num_classes={self.num_classes}, logit_dtype={self.logit_dtype!r}, "
                f"label_dtype={self.label_dtype!r}, ignore_index={self.ignore_index})")

    @property
    def num_rows(self) -> int:
        if self._stated_rows:
            return self._stated_rows
        if self._counted_rows is None:
            self._counted_rows = sum(len(y) for y, _ in self._iterate(max_rows=None, decode=False))
        return self._counted_rows

    def blocks(self, max_rows: int | None = None):
        """Yield (labels int64 [R], logits float32 [R, K]) per block, in file order, validating as it goes.

        A block larger than max_rows rows (default: 64 MiB of float32 logits) comes in several pieces.
        Raises ShardError at the first broken rule, after yielding the rows before it.
        """
        if max_rows is None:
            max_rows = max(1, (64 << 20) // (4 * self.num_classes))
        yield from self._iterate(max_rows=int(max_rows), decode=True)

    def rows(self):
        """All rows at once: (labels int64 [N], logits float32 [N, K]). Needs N × K × 4 bytes."""
        ys, zs = [], []
        for y, z in self.blocks():
            ys.append(y)
            zs.append(z)
        if not ys:
            return np.zeros(0, np.int64), np.zeros((0, self.num_classes), np.float32)
        return np.concatenate(ys), np.concatenate(zs)

    # -- the parser ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _open(self):
        try:
            f = open(self.path, "rb")
        except OSError as e:
            raise ShardError(self.path, "io_error", None, f"cannot open: {e.strerror}") from None
        with f:
            payload = _Payload(self.path, f)
            yield payload, _read_header(payload)

    def _iterate(self, max_rows, decode):
        with self._open() as (p, header):
            K = self.num_classes
            label_dt = LABEL_CODES[header["label_code"]][1]
            logit_dt = LOGIT_CODES[header["logit_code"]][1]
            row_bytes = K * logit_dt.itemsize
            step = max_rows or (1 << 62)
            rows_seen = 0
            while True:
                head = p.read(4)
                if len(head) < 4:
                    raise p.error("truncated", p.pos, "payload ends inside a block header (no end marker)" if head
                                  else "payload ends before the end marker (no end marker)")
                (rows,) = struct.unpack("<I", head)
                if rows == 0:
                    end_at = p.pos - 4
                    if self._stated_rows and self._stated_rows != rows_seen:
                        raise p.error("num_rows_mismatch", end_at, f"header states num_rows {self._stated_rows} "
                                      f"but the shard holds {rows_seen} rows")
                    break
                labels_at = p.pos
                labels = np.frombuffer(p.exact(rows * label_dt.itemsize, f"the labels of a block of {rows} rows"), dtype=label_dt).astype(np.int64)
                bad = ~(((labels >= 0) & (labels < K)) | (labels == self.ignore_index))
                if bad.any():
                    i = int(np.argmax(bad))
                    raise p.error("label_out_of_range", labels_at + i * label_dt.itemsize,
                                  f"label {int(labels[i])} out of range [0, {K}) and not ignore_index "
                                  f"{self.ignore_index} in row {rows_seen + i}")
                for s in range(0, rows, step):
                    n = min(step, rows - s)
                    raw = p.exact(n * row_bytes, "the logits")
                    if decode:
                        z = widen_logits(np.frombuffer(raw, dtype=logit_dt), self.logit_dtype).reshape(n, K)
                        yield labels[s:s + n], z
                    else:
                        yield labels[s:s + n], None
                rows_seen += rows
            extra = p.read(1)
            if extra:
                raise p.error("trailing_bytes", end_at + 4, "bytes after the end marker")
            if p._dobj is not None:
                raise p.error("truncated", p.pos,
                              "compressed stream ends inside a zstd frame (payload ends before the end marker)")


def _read_header(p: _Payload) -> dict:
    h = p.read(HEADER_SIZE)
    n = len(h)
    # Each field is checked as soon as its bytes are there, so a short header with a bad magic is bad_magic.
    if n >= 4 and h[:4] != b"LSHD":
        raise p.error("bad_magic", 0, f"not an LSHD payload (magic {h[:4].hex(' ')}, expected \"LSHD\")")
    if n >= 6:
        (version,) = struct.unpack_from("<H", h, 4)
        if version != 1:
            raise p.error("unsupported_version", 4, f"unsupported version {version} (this reader knows version 1)")
    if n >= 7 and h[6] not in LOGIT_CODES:
        raise p.error("unknown_logit_dtype", 6, f"unknown logit dtype code {h[6]} (1 = float32, 2 = float16, 3 = bfloat16)")
    if n >= 8 and h[7] not in LABEL_CODES:
        raise p.error("unknown_label_dtype", 7, f"unknown label dtype code {h[7]} (1 = int32, 2 = int64)")
    if n >= 12:
        (k,) = struct.unpack_from("<I", h, 8)
        if not 2 <= k <= MAX_NUM_CLASSES:
            raise p.error("num_classes_out_of_range", 8, f"num_classes {k} out of range [2, {MAX_NUM_CLASSES}]")
    if n >= 16:
        (m,) = struct.unpack_from("<I", h, 12)
        if m > MAX_META_LEN:
            raise p.error("meta_too_long", 12, f"meta_len {m} exceeds {MAX_META_LEN}")
    if n < HEADER_SIZE:
        raise p.error("truncated", p.pos, "payload ends inside the header (no end marker)")
    _, _, logit_code, label_code, K, meta_len, ignore_index, num_rows = HEADER.unpack(h)
    meta = None
    if meta_len:
        meta = _check_meta(p, p.exact(meta_len, "the metadata"))
    return {"num_classes": K, "logit_dtype": LOGIT_CODES[logit_code][0], "label_dtype": LABEL_CODES[label_code][0],
            "ignore_index": ignore_index, "num_rows": num_rows, "meta": meta,
            "logit_code": logit_code, "label_code": label_code}


def read_shard(path) -> Shard:
    """Open a shard: reads and checks its header and metadata (raising ShardError), rows via blocks()."""
    return Shard(path)
