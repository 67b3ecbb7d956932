"""Independent float64 NumPy reference for LSHD v1 shards, written from SHARD-FORMAT.md alone.

Two parts:
  * ``read_shard`` / ``scan_shard``: a strict streaming reader that reports the first contract violation
    as ``ShardError(kind, offset, reason)`` with the payload offset where a reader detects it;
  * ``Accumulator`` / ``evaluate_arrays`` / ``evaluate_shard``: the metrics, in float64, from logits
    decoded exactly from their stored dtype.

The formulas are rearranged (never approximated) so that no quantity is the small difference of two
large ones: with m = max z, s = sum exp(z - m) and s - 1 summed without the exp(0) term of one maximum,
    nll = (m - z[y]) + log1p(s - 1)          (not lse - z[y], which loses ~1e-15 absolute near nll = 0)
    brier = (sum_{k!=y} q_k)^2 + sum_{k!=y} q_k^2
    entropy = log1p(s - 1) + sum_k q_k (m - z_k)
    1 - conf = (s - 1) / s                    (ECE sums correct - conf per bin)
so very confident rows (nll ~ 1e-10) keep full relative precision. Sums over rows use math.fsum.

    python3 Fixtures/reference.py SHARD...   prints one JSON object per shard.
"""
from __future__ import annotations

import json
import math
import struct
import sys

import numpy as np

HEADER_LEN = 32
MAX_NUM_CLASSES = 16_777_216
MAX_META_LEN = 1_048_576
# code -> (name, little-endian storage dtype)
LOGIT_CODES = {1: ("float32", np.dtype("<f4")), 2: ("float16", np.dtype("<f2")), 3: ("bfloat16", np.dtype("<u2"))}
LABEL_CODES = {1: ("int32", np.dtype("<i4")), 2: ("int64", np.dtype("<i8"))}
# Rows x K float64 values handled at once (the row kernel holds a few copies: ~60 MB), for any K.
CHUNK_ELEMENTS = 1 << 20

DEFAULT_TOP_KS = (1, 5, 10)
DEFAULT_ECE_BINS = (15, 10)
DEFAULT_EPSILONS = (0.0, 0.1, 0.3)
METRIC_NAMES = ("nll", "perplexity", "accuracy", "mean_confidence", "entropy", "brier")


def decode_logits(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Stored logits (as read with the storage dtype) -> float64, exactly (NaN and +-Inf preserved)."""
    if dtype == "bfloat16":
        # bfloat16 is the upper half of a float32.
        return (raw.astype(np.uint32) << np.uint32(16)).view(np.float32).astype(np.float64)
    return raw.astype(np.float64)


# ------------------------------------------------------------------------------------------------
# Reader
# ------------------------------------------------------------------------------------------------
class ShardError(Exception):
    """A contract violation: kind (fixture vocabulary), payload offset (None for zstd errors), reason."""

    def __init__(self, kind: str, offset: int | None, reason: str):
        super().__init__(f"{kind} at payload offset {offset}: {reason}")
        self.kind, self.offset, self.reason = kind, offset, reason


class _Payload:
    """The decompressed payload as a byte stream with a position.

    Frames are decoded one at a time (decompressobj), so a file that ends inside a frame is noticed;
    zstandard's stream_reader returns a silent EOF there. zstd errors become ShardError("zstd_error").
    """

    def __init__(self, fileobj, input_chunk: int = 1 << 16):
        import zstandard  # only the reader needs it
        self._zstd = zstandard
        self._f = fileobj
        self._input_chunk = input_chunk
        self._dobj = None  # decoder of the frame in progress
        self._pending = b""  # compressed bytes after the last finished frame
        self._buf = b""  # decoded payload; self._buf[self._off:] is not yet consumed
        self._off = 0
        self.pos = 0  # payload bytes consumed

    def _fill(self) -> bool:
        """Decode more payload into the buffer; False at the clean end of the last frame."""
        while self._off == len(self._buf):
            data, self._pending = (self._pending, b"") if self._pending else (self._f.read(self._input_chunk), b"")
            if not data:
                if self._dobj is not None:
                    raise ShardError("truncated", self.pos, "the file ends inside a zstd frame")
                return False
            if self._dobj is None:
                self._dobj = self._zstd.ZstdDecompressor().decompressobj()
            try:
                self._buf, self._off = self._dobj.decompress(data), 0
            except self._zstd.ZstdError as e:
                raise ShardError("zstd_error", None, f"zstd: {e}") from None
            if self._dobj.eof:
                self._pending, self._dobj = self._dobj.unused_data, None
        return True

    def read(self, n: int) -> bytes:
        """Up to n bytes; fewer only at the end of the stream."""
        parts, got = [], 0
        while got < n and self._fill():
            take = min(n - got, len(self._buf) - self._off)
            parts.append(self._buf[self._off:self._off + take])
            self._off += take
            got += take
        self.pos += got
        return b"".join(parts)

    def exact(self, n: int, what: str) -> bytes:
        start = self.pos
        b = self.read(n)
        if len(b) != n:
            raise ShardError("truncated", self.pos,
                             f"stream ends in {what}: {n} bytes needed at offset {start}, {len(b)} present")
        return b


def _parse_meta(meta: bytes, offset: int):
    if not meta:
        return None
    try:
        text = meta.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ShardError("meta_not_json_object", offset, f"meta is not UTF-8: {e}") from None

    def no_constants(name):  # Python accepts NaN/Infinity; JSON does not
        raise ValueError(f"{name} is not JSON")

    try:
        value = json.loads(text, parse_constant=no_constants)
    except ValueError as e:
        raise ShardError("meta_not_json_object", offset, f"meta is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise ShardError("meta_not_json_object", offset, f"meta is JSON {type(value).__name__}, not an object")
    return value


def read_shard(path, chunk_elements: int = CHUNK_ELEMENTS):
    """Yield the header dict, then (labels int64 [n], logits float64 [n, K]) chunks of at most
    chunk_elements logits (always >= 1 row). Raises ShardError at the first violation."""
    with open(path, "rb") as f:
        p = _Payload(f)
        h = p.exact(HEADER_LEN, "the header")
        if h[:4] != b"LSHD":
            raise ShardError("bad_magic", 0, f"magic is {h[:4]!r}, not b'LSHD'")
        version, logit_code, label_code, K, meta_len, ignore_index, num_rows = struct.unpack_from("<HBBIIqQ", h, 4)
        if version != 1:
            raise ShardError("unsupported_version", 4, f"version {version}, only 1 is supported")
        if logit_code not in LOGIT_CODES:
            raise ShardError("unknown_logit_dtype", 6, f"logit dtype code {logit_code}")
        if label_code not in LABEL_CODES:
            raise ShardError("unknown_label_dtype", 7, f"label dtype code {label_code}")
        if not 2 <= K <= MAX_NUM_CLASSES:
            raise ShardError("num_classes_out_of_range", 8, f"num_classes {K} not in [2, {MAX_NUM_CLASSES}]")
        if meta_len > MAX_META_LEN:
            raise ShardError("meta_too_long", 12, f"meta_len {meta_len} > {MAX_META_LEN}")
        meta = _parse_meta(p.exact(meta_len, "meta"), HEADER_LEN)
        logit_name, logit_dt = LOGIT_CODES[logit_code]
        label_name, label_dt = LABEL_CODES[label_code]
        yield {"num_classes": K, "logit_dtype": logit_name, "label_dtype": label_name,
               "ignore_index": ignore_index, "num_rows": num_rows, "meta": meta}

        rows_seen = 0
        step = max(1, chunk_elements // K)
        while True:
            block_at = p.pos
            (rows,) = struct.unpack("<I", p.exact(4, "a block header"))
            if rows == 0:
                break
            labels_at = p.pos
            labels = np.frombuffer(p.exact(rows * label_dt.itemsize, "block labels"), dtype=label_dt).astype(np.int64)
            bad = ~(((labels >= 0) & (labels < K)) | (labels == ignore_index))
            if bad.any():
                i = int(np.argmax(bad))
                raise ShardError("label_out_of_range", labels_at + i * label_dt.itemsize,
                                 f"label {int(labels[i])} in row {i} of the block at offset {block_at} is neither "
                                 f"in [0, {K}) nor ignore_index {ignore_index}")
            for s in range(0, rows, step):
                n = min(step, rows - s)
                raw = np.frombuffer(p.exact(n * K * logit_dt.itemsize, "block logits"), dtype=logit_dt)
                yield labels[s:s + n], decode_logits(raw, logit_name).reshape(n, K)
            rows_seen += rows
        end_at = block_at
        if p.read(1):
            raise ShardError("trailing_bytes", end_at + 4, "bytes follow the end marker")
        if num_rows and num_rows != rows_seen:
            raise ShardError("num_rows_mismatch", end_at, f"num_rows states {num_rows}, {rows_seen} rows present")


def scan_shard(path):
    """(header, None) for a valid shard, (None, ShardError) for an invalid one; reads every byte."""
    try:
        it = read_shard(path)
        header = next(it)
        for _ in it:
            pass
        return header, None
    except ShardError as e:
        return None, e


# ------------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------------
def _row_terms(z: np.ndarray, y: np.ndarray):
    """Per-row terms for finite logits z [n, K] (float64) and labels y [n] in [0, K)."""
    n, K = z.shape
    r = np.arange(n)
    zy = z[r, y]
    m = z.max(axis=1)
    d = m[:, None] - z  # >= 0
    e = np.exp(-d)  # exp(z - m); the maxima give exactly 1
    e_no_max = e.copy()
    e_no_max[r, z.argmax(axis=1)] = 0.0
    s_minus_1 = e_no_max.sum(axis=1)
    s = 1.0 + s_minus_1
    log_s = np.log1p(s_minus_1)
    e_not_y = e.copy()
    e_not_y[r, y] = 0.0
    d_not_y = d.copy()
    d_not_y[r, y] = 0.0

    nll = (m - zy) + log_s
    uniform = d.sum(axis=1) / K + log_s  # U = lse - mean(z)
    # K*U - nll = sum_{k != y} (lse - z_k): a sum of non-negative terms, no cancellation.
    others = d_not_y.sum(axis=1) + (K - 1) * log_s
    conf = 1.0 / s
    one_minus_conf = s_minus_1 / s  # not 1 - conf, which cancels for confident rows
    q_not_y = e_not_y.sum(axis=1) / s  # = 1 - q_y
    brier = q_not_y * q_not_y + (e_not_y * e_not_y).sum(axis=1) / (s * s)
    entropy = log_s + (e * d).sum(axis=1) / s
    k_idx = np.arange(K)
    rank = (z > zy[:, None]).sum(axis=1) + ((z == zy[:, None]) & (k_idx[None, :] < y[:, None])).sum(axis=1)
    return nll, uniform, others, conf, one_minus_conf, brier, entropy, rank


class Accumulator:
    """Streams chunks of (labels, float64 logits) for one shard or several (pooled) shards."""

    def __init__(self, num_classes: int, ignore_index: int, top_ks=DEFAULT_TOP_KS, ece_bins=DEFAULT_ECE_BINS,
                 epsilons=DEFAULT_EPSILONS):
        self.K, self.ignore_index = int(num_classes), int(ignore_index)
        self.top_ks, self.ece_bins, self.epsilons = tuple(top_ks), tuple(ece_bins), tuple(epsilons)
        self.rows = self.counted = self.ignored = self.nonfinite = 0
        self.correct = 0
        self.top_hits = {k: 0 for k in self.top_ks}
        # Per-chunk float64 sums, added with math.fsum at the end (exactly rounded over chunks).
        self._sums = {name: [] for name in ("nll", "uniform", "others", "conf", "brier", "entropy")}
        self._bins = {b: [] for b in self.ece_bins}  # per chunk: per bin, the sum of (correct - conf)
        # Reliability diagram: per bin the row count, the correct rows, and per chunk the sum of conf.
        self._bin_rows = {b: np.zeros(b, np.int64) for b in self.ece_bins}
        self._bin_hits = {b: np.zeros(b, np.int64) for b in self.ece_bins}
        self._bin_conf = {b: [] for b in self.ece_bins}

    def update(self, labels, logits) -> None:
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
        z = np.asarray(logits, dtype=np.float64).reshape(len(y), self.K)
        self.rows += len(y)
        keep = y != self.ignore_index
        self.ignored += int((~keep).sum())
        finite = np.isfinite(z).all(axis=1)
        self.nonfinite += int((keep & ~finite).sum())
        keep &= finite
        if not keep.any():
            return
        y, z = y[keep], z[keep]
        if ((y < 0) | (y >= self.K)).any():
            raise ValueError("labels must be in [0, K) or equal to ignore_index")
        nll, uniform, others, conf, one_minus_conf, brier, entropy, rank = _row_terms(z, y)
        self.counted += len(y)
        # Kept divided by K - 1, so accumulators of shards with different K can be merged.
        others_per_class = others / (self.K - 1)
        for name, v in (("nll", nll), ("uniform", uniform), ("others", others_per_class), ("conf", conf),
                        ("brier", brier), ("entropy", entropy)):
            self._sums[name].append(math.fsum(v))
        hit = rank == 0
        self.correct += int(hit.sum())
        for k in self.top_ks:
            self.top_hits[k] += int((rank < k).sum())
        # ECE sums correct - conf per bin; for a correct row that is 1 - conf, kept without cancellation.
        correct_minus_conf = np.where(hit, one_minus_conf, -conf)
        for B in self.ece_bins:
            b = np.minimum(np.floor(conf * B).astype(np.int64), B - 1)
            order = np.argsort(b, kind="stable")
            edges = np.searchsorted(b[order], np.arange(B + 1))
            self._bins[B].append([math.fsum(correct_minus_conf[order[edges[i]:edges[i + 1]]]) for i in range(B)])
            self._bin_conf[B].append([math.fsum(conf[order[edges[i]:edges[i + 1]]]) for i in range(B)])
            self._bin_rows[B] += np.bincount(b, minlength=B)
            self._bin_hits[B] += np.bincount(b[hit], minlength=B)

    def result(self) -> dict:
        n = self.counted
        out = {"rows": self.rows, "counted_rows": n, "ignored_rows": self.ignored, "nonfinite_rows": self.nonfinite}
        if n == 0:
            out.update({name: None for name in METRIC_NAMES})
            out["top_k_accuracy"] = {str(k): None for k in self.top_ks}
            out["ece"] = {str(B): None for B in self.ece_bins}
            out["loss"] = {mode: {repr(float(e)): None for e in self.epsilons} for mode in ("uniform", "others")}
            return out
        S = {name: math.fsum(v) for name, v in self._sums.items()}
        nll = S["nll"] / n
        try:
            ppl = math.exp(nll)
        except OverflowError:
            ppl = math.inf
        out.update({"nll": nll, "perplexity": ppl, "accuracy": self.correct / n,
                    "mean_confidence": S["conf"] / n, "entropy": S["entropy"] / n, "brier": S["brier"] / n})
        out["top_k_accuracy"] = {str(k): self.top_hits[k] / n for k in self.top_ks}
        out["ece"] = {}
        for B in self.ece_bins:
            # n_b/n * |acc_b - conf_b| = |sum over the bin of (correct - conf)| / n
            chunks = self._bins[B]
            out["ece"][str(B)] = math.fsum(abs(math.fsum(c[b] for c in chunks)) for b in range(B)) / n
        out["loss"] = {
            "uniform": {repr(float(e)): ((1 - e) * S["nll"] + e * S["uniform"]) / n for e in self.epsilons},
            "others": {repr(float(e)): ((1 - e) * S["nll"] + e * S["others"]) / n for e in self.epsilons},
        }
        return out

    def calibration(self) -> dict:
        """{"mce": {B: ...}, "reliability": {B: [bin, ...]}} for each bin count B (kept out of result(),
        whose keys other references' expected files list)."""
        mce = {}
        for B in self.ece_bins:
            # The largest |acc_b - conf_b| = |sum over the bin of (correct - conf)| / n_b over non-empty bins.
            gaps = [abs(math.fsum(c[b] for c in self._bins[B])) / int(self._bin_rows[B][b])
                    for b in range(B) if self._bin_rows[B][b] > 0]
            mce[str(B)] = max(gaps) if gaps else None
        return {"mce": mce, "reliability": {str(B): self._reliability(B) for B in self.ece_bins}}

    def _reliability(self, B: int) -> list:
        """B bins [b/B, (b+1)/B): count, accuracy and mean confidence (None for an empty bin)."""
        out = []
        for b in range(B):
            count = int(self._bin_rows[B][b])
            conf = math.fsum(c[b] for c in self._bin_conf[B])
            out.append({"lower": b / B, "upper": (b + 1) / B, "count": count,
                        "accuracy": int(self._bin_hits[B][b]) / count if count else None,
                        "mean_confidence": conf / count if count else None})
        return out

    def merge(self, other: "Accumulator") -> "Accumulator":
        """Pool another accumulator (same top_ks, ece_bins, epsilons; any K) into this one."""
        if (self.top_ks, self.ece_bins, self.epsilons) != (other.top_ks, other.ece_bins, other.epsilons):
            raise ValueError("accumulators report different metrics")
        self.rows += other.rows
        self.counted += other.counted
        self.ignored += other.ignored
        self.nonfinite += other.nonfinite
        self.correct += other.correct
        for k in self.top_ks:
            self.top_hits[k] += other.top_hits[k]
        for name in self._sums:
            self._sums[name] += other._sums[name]
        for B in self.ece_bins:
            self._bins[B] += other._bins[B]
            self._bin_conf[B] += other._bin_conf[B]
            self._bin_rows[B] += other._bin_rows[B]
            self._bin_hits[B] += other._bin_hits[B]
        return self


def ece_bin_margin(logits, labels, ignore_index: int, ece_bins=DEFAULT_ECE_BINS) -> float:
    """Smallest distance of conf*B from an inner bin edge over counted rows (inf when none).

    A tiny margin means another correct implementation may put that row into the neighbouring bin.
    """
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    z = np.asarray(logits, dtype=np.float64).reshape(len(y), -1)
    keep = (y != ignore_index) & np.isfinite(z).all(axis=1)
    if not keep.any():
        return math.inf
    z = z[keep]
    conf = 1.0 / np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1)
    margin = math.inf
    for B in ece_bins:
        x = conf * B
        inner = x < B - 0.5  # values near B clamp into the last bin either way
        if inner.any():
            margin = min(margin, float(np.abs(x[inner] - np.round(x[inner])).min()))
    return margin


def evaluate_arrays(num_classes, labels, logits, ignore_index=-100, **kw) -> dict:
    """Metrics for in-memory float64 logits [..., K] and labels [...] (chunked over rows)."""
    acc = Accumulator(num_classes, ignore_index, **kw)
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    z = np.asarray(logits, dtype=np.float64).reshape(len(y), num_classes)
    step = max(1, CHUNK_ELEMENTS // num_classes)
    for s in range(0, len(y), step):
        acc.update(y[s:s + step], z[s:s + step])
    return acc.result()


def accumulate_shard(path, **kw):
    """(header, Accumulator) of one shard; raises ShardError when it is invalid."""
    it = read_shard(path)
    header = next(it)
    acc = Accumulator(header["num_classes"], header["ignore_index"], **kw)
    for labels, logits in it:
        acc.update(labels, logits)
    return header, acc


def evaluate_shard(path, **kw) -> dict:
    """Header fields plus metrics of one shard; raises ShardError when it is invalid."""
    header, acc = accumulate_shard(path, **kw)
    out = dict(header)
    out.update(acc.result())
    out.update(acc.calibration())
    return out


def main(argv) -> int:
    status = 0
    for path in argv:
        try:
            print(json.dumps({"shard": path, "ok": True, **evaluate_shard(path)}))
        except ShardError as e:
            print(json.dumps({"shard": path, "ok": False, "error": {"kind": e.kind, "offset": e.offset,
                                                                     "reason": e.reason}}))
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
