#!/usr/bin/env python3
"""Deterministic LSHD v1 test fixtures and their expected values.

    python3 Fixtures/make_fixtures.py           # (re)write Fixtures/valid, Fixtures/invalid, Fixtures/expected.json
    python3 Fixtures/make_fixtures.py --check   # regenerate in a temp dir; fail unless the committed files agree

Valid shards are written with Fixtures/lshd.py (or framed by hand where the framing is the point) and
their expected metrics come from Fixtures/reference.py reading the files back. Invalid shards are built
by hand with struct + zstandard, one contract rule each, everything else valid; `offset` is the payload
offset where a reader checking the rules in contract order (magic, version, logit dtype, label dtype, K,
meta_len, meta JSON, then blocks in order) detects the violation. zstd_error entries have offset null.

--check compares decompressed payloads and frame structure (not compressed bytes, which depend on the
zstd version) and expected.json with relative tolerance 1e-12. Data comes from PCG64 raw bits and
exactly rounded arithmetic only, so it does not depend on the numpy version or the CPU's libm.
"""
from __future__ import annotations

import argparse
import json
import math
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
import zstandard

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import lshd  # noqa: E402
import reference  # noqa: E402

TOP_KS = (1, 5, 10)
ECE_BINS = (15, 10)
EPSILONS = (0.0, 0.1, 0.3)
# A counted row whose conf*B lies closer than this to an inner bin edge could land in the other bin in
# another correct implementation; fixtures with more than one counted row must stay clear of that.
ECE_EDGE_MARGIN = 1e-6
SIZE_BUDGET = 3_000_000
END = struct.pack("<I", 0)
SKIPPABLE_MAGIC = 0x184D2A50
LOGIT_STORE = {"float32": "<f4", "float16": "<f2"}  # hand-built invalid payloads avoid bfloat16
LABEL_STORE = {"int32": "<i4", "int64": "<i8"}
LOGIT_CODE = {"float32": 1, "float16": 2, "bfloat16": 3}
LABEL_CODE = {"int32": 1, "int64": 2}


class Rng:
    """Deterministic everywhere: PCG64 raw output (stable by numpy policy) and +, *, sqrt only.

    numpy's Generator.normal() may change between releases and libm's exp/log/cos may differ in the last
    bit between machines, either of which could change a stored float32.
    """

    def __init__(self, seed: int):
        self._bits = np.random.PCG64(seed)

    def _raw(self, shape):
        return self._bits.random_raw(int(np.prod(shape))).reshape(shape)

    def uniform(self, *shape):
        return (self._raw(shape) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53

    def normal(self, *shape):
        """Irwin-Hall(12) - 6: mean 0, variance 1, bounded to [-6, 6]."""
        s = np.zeros(shape)
        for _ in range(12):
            s = s + self.uniform(*shape)
        return s - 6.0

    def integers(self, lo, hi, *shape):
        return (self._raw(shape) % np.uint64(hi - lo)).astype(np.int64) + lo


def plausible_labels(rng: Rng, z, p_top: float, ignore_index: int | None = None, p_ignore: float = 0.0):
    """Labels that are the argmax with probability p_top, otherwise uniform; some set to ignore_index."""
    n, K = z.shape
    y = np.where(rng.uniform(n) < p_top, z.argmax(axis=1), rng.integers(0, K, n))
    if ignore_index is not None:
        y = np.where(rng.uniform(n) < p_ignore, ignore_index, y)
    return y.astype(np.int64)


# ------------------------------------------------------------------------------------------------
# Hand-built payloads and frames
# ------------------------------------------------------------------------------------------------
def header(K, logit="float32", label="int64", ignore_index=-100, num_rows=0, meta=b"", *, magic=b"LSHD",
           version=1, logit_code=None, label_code=None, meta_len=None) -> bytes:
    return struct.pack("<4sHBBIIqQ", magic, version, LOGIT_CODE[logit] if logit_code is None else logit_code,
                       LABEL_CODE[label] if label_code is None else label_code, K,
                       len(meta) if meta_len is None else meta_len, ignore_index, num_rows) + meta


def block(y, z, logit="float32", label="int64") -> bytes:
    """A block with stored logits: float32/float16 by numpy cast, bfloat16 via lshd (round to nearest even)."""
    stored = lshd.encode_logits(z, logit) if logit == "bfloat16" else np.asarray(z).astype(LOGIT_STORE[logit])
    return struct.pack("<I", len(y)) + np.asarray(y).astype(LABEL_STORE[label]).tobytes() + stored.tobytes()


def frame(payload: bytes, content_size: bool = True, checksum: bool = True) -> bytes:
    """One zstd frame; content_size=False gives a streaming frame whose header has no size."""
    cctx = zstandard.ZstdCompressor(level=3, write_checksum=checksum, write_content_size=content_size)
    if content_size:
        return cctx.compress(payload)
    cobj = cctx.compressobj()
    return cobj.compress(payload) + cobj.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)


def skippable_frame(data: bytes) -> bytes:
    return struct.pack("<II", SKIPPABLE_MAGIC, len(data)) + data


def split_frames(data: bytes):
    """[(kind, payload, has_content_size, has_checksum)] per frame; raises on anything not whole frames."""
    out, i = [], 0
    while i < len(data):
        (magic,) = struct.unpack_from("<I", data, i)
        if magic & 0xFFFFFFF0 == SKIPPABLE_MAGIC:
            (size,) = struct.unpack_from("<I", data, i + 4)
            out.append(("skippable", data[i + 8:i + 8 + size], None, None))
            i += 8 + size
            continue
        params = zstandard.get_frame_parameters(data[i:i + 18])
        dobj = zstandard.ZstdDecompressor().decompressobj()
        payload = dobj.decompress(data[i:])
        if not dobj.eof:
            raise ValueError(f"incomplete zstd frame at file offset {i}")
        out.append(("zstd", payload, params.content_size != zstandard.CONTENTSIZE_UNKNOWN, params.has_checksum))
        i = len(data) - len(dobj.unused_data)
    return out


# ------------------------------------------------------------------------------------------------
# Valid fixtures. Each builder writes its file and returns (spec, blocks) where blocks are the source
# (labels, logits) arrays, used to check that the written file reads back as intended.
# ------------------------------------------------------------------------------------------------
def write_blocks(path, blocks, K, **kw):
    with lshd.LSHDWriter(path, K, **kw) as w:
        for y, z in blocks:
            w.write(z, y)


def v_worked_example(path):
    z = np.log(np.array([[0.8, 0.1, 0.1]])).astype(np.float32)
    blocks = [(np.array([0]), z)]
    write_blocks(path, blocks, 3)
    return dict(num_classes=3, logit_dtype="float32", label_dtype="int64", ignore_index=-100, meta=None), blocks


def v_k2(path):
    rng = Rng(1002)
    n = 200
    scale = np.array([0.1, 1.0, 4.0])[rng.integers(0, 3, n)]  # spread the confidences over all bins
    z = (rng.normal(n, 2) * 2.5 * scale[:, None]).astype(np.float32)
    y = plausible_labels(rng, z, 0.75, -100, 0.1)
    cuts = [0, 1, 64, 128, 178, 200]  # blocks of 1, 63, 64, 50, 22 rows
    blocks = [(y[a:b], z[a:b]) for a, b in zip(cuts, cuts[1:])]
    write_blocks(path, blocks, 2, frame_bytes=600)
    return dict(num_classes=2, logit_dtype="float32", label_dtype="int64", ignore_index=-100, meta=None), blocks


BF16_META = {"model": "tiny-lm", "checkpoint": "step-1000", "split": "validation",
             "note": "ties & bfloat16 — grüße 🙂", "vocab": 32000, "temperature": 1.0, "tags": ["a", "b"]}
# Ranks of the gold label in the first block (by construction below).
BF16_BLOCK1_RANKS = [1, 0, 3, 5, 10, 0, 1, 3]


def v_bf16_k32000(path):
    K = 32000
    rng = Rng(1003)

    def grid(n, step, lo, hi):  # values on a coarse grid, so equal logits are everywhere
        return (rng.integers(lo, hi, n, K) * step).astype(np.float32)

    # Block 1: constructed ties on a background of quarter steps in [-8, 8).
    z1, y1 = grid(8, 0.25, -32, 32), np.zeros(8, np.int64)
    z1[0, [40, 100]] = 12; y1[0] = 100   # gold ties the max, a lower index has it too: rank 1
    z1[1, [40, 100]] = 12; y1[1] = 40    # gold ties the max at the lower index: rank 0
    seven = [5, 900, 4000, 12000, 20000, 25000, 31999]
    z1[2, seven] = 12; y1[2] = 12000     # 7-way tie at the max, gold 4th: rank 3
    z1[3, seven] = 12; y1[3] = 25000     # gold 6th: rank 5 (top-5 miss, top-10 hit)
    twelve = list(range(1000, 13000, 1000))
    z1[4, twelve] = 11; y1[4] = twelve[10]  # rank 10 (top-10 miss)
    z1[5, [0, 31999]] = 9.5; y1[5] = 0    # gold at index 0 ties index K-1: rank 0
    z1[6, [0, 31999]] = 9.5; y1[6] = 31999  # gold at K-1 ties index 0: rank 1
    z1[7, :] = 0.5; y1[7] = 3             # all equal: rank 3, confidence 1/K
    # Block 2: full-precision values (float32 rounded to bfloat16 by the writer), one ignored row.
    z2 = (rng.normal(8, K) * 3.0).astype(np.float32)
    y2 = plausible_labels(rng, z2, 0.5)
    y2[5] = -100
    # Block 3: half steps in [-4, 4): the gold value is shared by ~2000 classes, so the rank is mostly
    # a count of equal logits at lower indexes; two rows with a peak 20 above the rest.
    z3 = grid(8, 0.5, -8, 8)
    y3 = rng.integers(0, K, 8)
    z3[6, y3[6]] = 24.0
    z3[7, 777] = 24.0
    y3[7] = 778 if y3[7] == 777 else y3[7]
    blocks = [(y1, z1), (y2, z2), (y3, z3)]
    write_blocks(path, blocks, K, logit_dtype="bfloat16", meta=BF16_META, frame_bytes=400_000)
    return dict(num_classes=K, logit_dtype="bfloat16", label_dtype="int64", ignore_index=-100, meta=BF16_META), blocks


def v_f16_ignore0(path):
    rng = Rng(1004)
    K, n = 50, 300
    z = (rng.normal(n, K) * 2.5).astype(np.float32)
    z[17, 3], z[17, 9] = 65504.0, -65504.0  # float16's largest finite magnitudes
    y = plausible_labels(rng, z, 0.5, 0, 0.15)  # label 0 is the padding id here
    cuts = [0, 100, 101, 200, 300]
    blocks = [(y[a:b], z[a:b]) for a, b in zip(cuts, cuts[1:])]
    write_blocks(path, blocks, K, logit_dtype="float16", label_dtype="int32", ignore_index=0, frame_bytes=4000)
    return dict(num_classes=K, logit_dtype="float16", label_dtype="int32", ignore_index=0, meta=None), blocks


def v_many_frames_one_row_blocks(path):
    rng = Rng(1005)
    K, n = 17, 100
    z = (rng.normal(n, K) * 2.0).astype(np.float32)
    y = plausible_labels(rng, z, 0.6, -100, 0.1)
    blocks = [(y[i:i + 1], z[i:i + 1]) for i in range(n)]
    # Header, each one-row block and the end marker in frames of their own; every other frame is a
    # streaming frame without a content size.
    pieces = [header(K, "bfloat16")] + [block(b[0], b[1], "bfloat16") for b in blocks] + [END]
    path.write_bytes(b"".join(frame(p, content_size=(i % 2 == 0)) for i, p in enumerate(pieces)))
    return dict(num_classes=K, logit_dtype="bfloat16", label_dtype="int64", ignore_index=-100, meta=None), blocks


def v_num_rows_stated(path):
    rng = Rng(1006)
    K, n = 11, 3000
    z = (rng.normal(n, K) * 2.0).astype(np.float32)
    y = plausible_labels(rng, z, 0.6, -100, 0.03)
    blocks = [(y, z)]
    write_blocks(path, blocks, K, label_dtype="int32", num_rows=n)
    return dict(num_classes=K, logit_dtype="float32", label_dtype="int32", ignore_index=-100, meta=None), blocks


def v_all_ignored(path):
    rng = Rng(1007)
    K = 5
    z = rng.normal(10, K).astype(np.float32)
    z[2, 1] = np.nan  # an ignored row is never counted as nonfinite
    y = np.full(10, -100, np.int64)
    blocks = [(y[:4], z[:4]), (y[4:], z[4:])]
    write_blocks(path, blocks, K)
    return dict(num_classes=K, logit_dtype="float32", label_dtype="int64", ignore_index=-100, meta=None), blocks


def v_zero_rows(path):
    meta = {"split": "empty"}
    write_blocks(path, [], 4, logit_dtype="float16", label_dtype="int32", meta=meta)
    return dict(num_classes=4, logit_dtype="float16", label_dtype="int32", ignore_index=-100, meta=meta), []


def v_nonfinite(path):
    rng = Rng(1009)
    K = 8
    z = (rng.normal(12, K) * 2.0).astype(np.float32)
    y = plausible_labels(rng, z, 0.5)
    z[2, 3] = np.nan
    z[4, 0] = np.inf
    z[5, 7] = -np.inf  # -inf on a class that is not the gold one still makes the row nonfinite
    z[7, :] = -np.inf
    z[8, y[8]] = np.inf
    z[10, 1] = np.nan; y[10] = -100  # ignored, not nonfinite
    y[11] = -100
    blocks = [(y[:6], z[:6]), (y[6:], z[6:])]
    write_blocks(path, blocks, K)
    return dict(num_classes=K, logit_dtype="float32", label_dtype="int64", ignore_index=-100, meta=None), blocks


def v_confident(path):
    rng = Rng(1010)
    K, n = 1000, 32
    rest = rng.normal(n, K)
    peak = rng.integers(0, K, n)
    gap = 14.0 + 16.0 * rng.uniform(n)  # nll ~ 1e-3 (gap 14) down to ~1e-10 (gap 30)
    z = rest.copy()
    z[np.arange(n), peak] = rest.max(axis=1) + gap
    z = z.astype(np.float32)
    blocks = [(peak.astype(np.int64), z)]
    write_blocks(path, blocks, K)
    return dict(num_classes=K, logit_dtype="float32", label_dtype="int64", ignore_index=-100, meta=None), blocks


def v_frames_split_anywhere(path):
    rng = Rng(1011)
    K = 6
    meta = {"split": "test"}
    z = (rng.normal(40, K) * 2.0).astype(np.float32)
    y = plausible_labels(rng, z, 0.5, -100, 0.1)
    cuts = [0, 3, 13, 40]
    blocks = [(y[a:b], z[a:b]) for a, b in zip(cuts, cuts[1:])]
    payload = header(K, meta=json.dumps(meta).encode()) + b"".join(block(b[0], b[1]) for b in blocks) + END
    meta_end = 32 + len(json.dumps(meta))
    b1_labels = meta_end + 4
    b2_logits = b1_labels + 3 * 8 + 3 * K * 4 + 4 + 10 * 8
    # Frame boundaries inside the header, inside meta, inside a label, inside a float, and just
    # before the end marker's last byte; an empty frame in between.
    at = [0, 10, 33, b1_labels + 5, b2_logits + 4 * 7 + 2, len(payload) - 1, len(payload)]
    pieces = [payload[a:b] for a, b in zip(at, at[1:])]
    pieces.insert(3, b"")
    frames = [frame(p, content_size=(i % 2 == 0), checksum=(i != 2)) for i, p in enumerate(pieces)]
    path.write_bytes(b"".join(frames))
    return dict(num_classes=K, logit_dtype="float32", label_dtype="int64", ignore_index=-100, meta=meta), blocks


def v_skippable_frame(path):
    rng = Rng(1012)
    K = 3
    z = rng.normal(5, K).astype(np.float32)
    y = plausible_labels(rng, z, 0.5)
    blocks = [(y, z)]
    data = (skippable_frame(b"smoothd fixture: skippable frames carry no payload")
            + frame(header(K, "float16") + block(y, z, "float16"))
            + skippable_frame(b"")
            + frame(END))
    path.write_bytes(data)
    return dict(num_classes=K, logit_dtype="float16", label_dtype="int64", ignore_index=-100, meta=None), blocks


VALID = [
    ("worked_example", v_worked_example),
    ("k2", v_k2),
    ("bf16_k32000", v_bf16_k32000),
    ("f16_ignore0", v_f16_ignore0),
    ("many_frames_one_row_blocks", v_many_frames_one_row_blocks),
    ("num_rows_stated", v_num_rows_stated),
    ("all_ignored", v_all_ignored),
    ("zero_rows", v_zero_rows),
    ("nonfinite", v_nonfinite),
    ("confident", v_confident),
    ("frames_split_anywhere", v_frames_split_anywhere),
    ("skippable_frame", v_skippable_frame),
]


def stored(z, dtype):
    """What a reader decodes from the file for source logits z."""
    return reference.decode_logits(lshd.encode_logits(z, dtype), dtype)


def verify_valid(path, spec, blocks, name):
    """Read the file back with the reference reader: header and data as intended, ECE bins unambiguous."""
    it = reference.read_shard(path)
    hdr = next(it)
    for key, value in spec.items():
        assert hdr[key] == value, f"{name}: header {key} = {hdr[key]!r}, intended {value!r}"
    read_y, read_z = [], []
    for y, z in it:
        read_y.append(y)
        read_z.append(z)
    K = spec["num_classes"]
    want_y = np.concatenate([b[0] for b in blocks]) if blocks else np.zeros(0, np.int64)
    want_z = np.concatenate([stored(b[1], spec["logit_dtype"]) for b in blocks]) if blocks else np.zeros((0, K))
    got_y = np.concatenate(read_y) if read_y else np.zeros(0, np.int64)
    got_z = np.concatenate(read_z) if read_z else np.zeros((0, K))
    assert np.array_equal(got_y, want_y), f"{name}: labels read back differ"
    assert np.array_equal(got_z, want_z, equal_nan=True), f"{name}: logits read back differ"
    counted = (got_y != spec["ignore_index"]) & np.isfinite(got_z).all(axis=1)
    if counted.sum() > 1:  # with one row, either bin gives the same ECE
        margin = reference.ece_bin_margin(got_z, got_y, spec["ignore_index"], ECE_BINS)
        assert margin >= ECE_EDGE_MARGIN, f"{name}: a confidence is {margin:.3g} from an ECE bin edge"
    return got_y, got_z


def check_worked_example(entry):
    want = {"nll": 0.223144, "uniform": 0.361773, "others": 0.431088}
    got = {"nll": entry["nll"], "uniform": entry["loss"]["uniform"]["0.1"], "others": entry["loss"]["others"]["0.1"]}
    for key in want:
        assert round(got[key], 6) == want[key], f"worked example {key}: {got[key]} != {want[key]} (SHARD-FORMAT.md)"


def check_bf16_ranks(got_y, got_z):
    rank = reference._row_terms(got_z[:8], got_y[:8])[-1]
    assert rank.tolist() == BF16_BLOCK1_RANKS, f"bf16_k32000 block 1 ranks {rank.tolist()} != {BF16_BLOCK1_RANKS}"


def build_valid(outdir: Path):
    entries = []
    for name, make in VALID:
        rel = f"valid/{name}.lshd.zst"
        path = outdir / rel
        spec, blocks = make(path)
        got_y, got_z = verify_valid(path, spec, blocks, name)
        r = reference.evaluate_shard(path, top_ks=TOP_KS, ece_bins=ECE_BINS, epsilons=EPSILONS)
        entry = {"file": rel, "num_classes": r["num_classes"], "logit_dtype": r["logit_dtype"],
                 "label_dtype": r["label_dtype"], "ignore_index": r["ignore_index"]}
        for key in ("rows", "counted_rows", "ignored_rows", "nonfinite_rows", "nll", "perplexity", "accuracy",
                    "mean_confidence", "entropy", "brier", "top_k_accuracy", "ece", "mce", "reliability", "loss", "meta"):
            entry[key] = r[key]
        if name == "worked_example":
            check_worked_example(entry)
        if name == "bf16_k32000":
            check_bf16_ranks(got_y, got_z)
        entries.append(entry)
    return entries


# ------------------------------------------------------------------------------------------------
# Invalid fixtures
# ------------------------------------------------------------------------------------------------
class Base:
    """A small valid shard (K=5, float32, three blocks) with its payload offsets."""

    def __init__(self, label="int64", K=5, rows=(2, 3, 4), seed=2000, meta=b'{"split":"test"}', ignore_rows=()):
        rng = Rng(seed)
        self.K, self.label, self.meta = K, label, meta
        self.blocks = []
        row = 0
        for n in rows:
            z = rng.normal(n, K).astype(np.float32)
            y = plausible_labels(rng, z, 0.5)
            for i in range(n):
                if row + i in ignore_rows:
                    y[i] = -100
            self.blocks.append((y, z))
            row += n
        self.lsize = np.dtype(LABEL_STORE[label]).itemsize

    def head(self, **kw):
        args = dict(K=self.K, label=self.label, meta=self.meta)
        args.update(kw)
        return header(**args)

    def body(self, blocks=None):
        return b"".join(block(y, z, label=self.label) for y, z in (self.blocks if blocks is None else blocks))

    def payload(self, **kw):
        return self.head(**kw) + self.body() + END

    def block_offset(self, j):
        """Payload offset of block j's row count."""
        off = 32 + len(self.meta)
        for y, z in self.blocks[:j]:
            off += 4 + len(y) * self.lsize + z.size * 4
        return off


def prefix_then_error(data: bytes, payload: bytes) -> bool:
    """True when streaming decompression yields only a true prefix of payload, then a zstd error.

    Then every reader sees valid payload bytes up to the error, whatever its buffer sizes, so the
    zstd error is the first and only rule it can report.
    """
    dobj = zstandard.ZstdDecompressor().decompressobj()
    out = b""
    try:
        for i in range(0, len(data), 256):
            out += dobj.decompress(data[i:i + 256])
            if out != payload[:len(out)]:
                return False
    except zstandard.ZstdError:
        return out == payload[:len(out)]
    return False


def flip(data: bytes, i: int) -> bytes:
    return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]


def corrupt_middle_byte(payload_for_variant):
    """The first variant whose compressed frame, with its middle byte flipped, fails cleanly."""
    for variant in range(1000):
        payload = payload_for_variant(variant)
        good = frame(payload)
        bad = flip(good, len(good) // 2)
        if prefix_then_error(bad, payload):
            return bad
    raise RuntimeError("no variant gave a clean zstd error")


# How --check turns a committed zstd_error fixture back into the frames it was made from. The
# damage is found from the committed file itself, so the check works whatever zstd version made it.
REPAIR = {
    "invalid/zstd_error_corrupt_byte.lshd.zst": lambda d: flip(d, len(d) // 2),
    "invalid/zstd_error_bad_checksum.lshd.zst": lambda d: flip(d, len(d) - 1),
}
RAW_FILES = {"invalid/zstd_error_not_zstd.lshd.zst", "invalid/truncated_empty_file.lshd.zst"}


def build_invalid(outdir: Path):
    entries = []

    def put(name, kind, offset, data):
        rel = f"invalid/{name}.lshd.zst"
        (outdir / rel).write_bytes(data)
        entries.append({"file": rel, "kind": kind, "offset": offset})

    b = Base()
    full = b.payload()

    # Header rules, in the order a reader checks them; the rest of each payload is valid.
    put("bad_magic", "bad_magic", 0, frame(b.payload(magic=b"LSHd")))
    put("unsupported_version", "unsupported_version", 4, frame(b.payload(version=2)))
    put("unknown_logit_dtype", "unknown_logit_dtype", 6, frame(b.head(logit_code=4) + END))
    put("unknown_label_dtype", "unknown_label_dtype", 7, frame(b.head(label_code=0) + END))
    k1 = [(np.zeros(2, np.int64), np.ones((2, 1), np.float32))]
    put("num_classes_out_of_range_k1", "num_classes_out_of_range", 8, frame(b.head(K=1) + b.body(k1) + END))
    put("num_classes_out_of_range_k16777217", "num_classes_out_of_range", 8, frame(b.head(K=16_777_217) + END))
    # The payload ends right after the header: meta_len is checked before meta is read.
    put("meta_too_long", "meta_too_long", 12, frame(b.head(meta=b"", meta_len=1_048_577)))
    for suffix, meta in (("array", b"[1,2]"), ("malformed", b'{"model": "x", "split": '),
                         ("bad_utf8", b'{"model": "\xff\xfe"}')):
        put(f"meta_not_json_object_{suffix}", "meta_not_json_object", 32, frame(b.head(meta=meta) + b.body() + END))

    # Labels: == K in the first block; a negative non-ignore label in the third block, after ignored rows.
    eq = Base(seed=2001)
    eq.blocks[0][0][1] = eq.K
    put("label_out_of_range_eq_k", "label_out_of_range", eq.block_offset(0) + 4 + 1 * eq.lsize, frame(eq.payload()))
    neg = Base(label="int32", seed=2002, ignore_rows=(0, 3, 4))
    neg.blocks[2][0][2] = -1
    put("label_out_of_range_negative", "label_out_of_range", neg.block_offset(2) + 4 + 2 * neg.lsize,
        frame(neg.payload()))

    # Truncation: offset = payload bytes present.
    cut = b.block_offset(1) + 4 + 3 * b.lsize + 6  # in block 2's logits, mid float
    put("truncated_mid_logits", "truncated", cut, frame(full[:cut]))
    parts = [b.head() + b.body(b.blocks[:1]), b.body(b.blocks[1:2]), b.body(b.blocks[2:])]
    put("truncated_at_frame_boundary", "truncated", sum(map(len, parts)), b"".join(frame(p) for p in parts))
    put("truncated_in_header", "truncated", 20, frame(full[:20]))
    put("truncated_empty_file", "truncated", 0, b"")

    # After the end marker: four zero bytes (a second "end marker") in the same frame; a second frame.
    put("trailing_bytes_same_frame", "trailing_bytes", len(full), frame(full + b"\0\0\0\0"))
    put("trailing_bytes_second_frame", "trailing_bytes", len(full), frame(full) + frame(b"LSHD trailing frame"))

    # num_rows stated: 9 rows present. The mismatch is known at the end marker.
    end_at = len(full) - 4
    put("num_rows_mismatch_larger", "num_rows_mismatch", end_at, frame(b.payload(num_rows=12)))
    put("num_rows_mismatch_smaller", "num_rows_mismatch", end_at, frame(b.payload(num_rows=5)))

    # zstd errors. The corrupted frame is large enough for several zstd blocks; its logits sit on a
    # coarse grid so the data compresses and the flipped byte lands in entropy-coded data.
    def corrupt_payload(variant):
        rng = Rng(3000 + variant)
        K, n = 64, 1024
        z = (rng.integers(-16, 16, n, K) * 0.25).astype(np.float32)
        y = plausible_labels(rng, z, 0.5)
        return header(K) + block(y, z) + END

    put("zstd_error_corrupt_byte", "zstd_error", None, corrupt_middle_byte(corrupt_payload))
    put("zstd_error_bad_checksum", "zstd_error", None, flip(frame(full), len(frame(full)) - 1))
    put("zstd_error_not_zstd", "zstd_error", None, full)
    return entries


def invalid_problems(outdir: Path, entries):
    """Where the reference reader does not report exactly the stated kind and offset."""
    problems = []
    for e in entries:
        path = outdir / e["file"]
        if not path.exists():
            continue  # reported as a missing file
        _, err = reference.scan_shard(path)
        if err is None:
            problems.append(f"{e['file']}: the reference reader accepts it")
        elif err.kind != e["kind"]:
            problems.append(f"{e['file']}: reference says {err.kind} ({err.reason}), stated {e['kind']}")
        elif e["offset"] is not None and err.offset != e["offset"]:
            problems.append(f"{e['file']}: reference offset {err.offset}, stated {e['offset']}")
    return problems


# ------------------------------------------------------------------------------------------------
# Build and check
# ------------------------------------------------------------------------------------------------
def build(outdir: Path) -> dict:
    for sub in ("valid", "invalid"):
        d = outdir / sub
        d.mkdir(parents=True, exist_ok=True)
        for old in d.glob("*.lshd.zst"):
            old.unlink()
    expected = {"generator": "Fixtures/make_fixtures.py", "valid": build_valid(outdir), "invalid": build_invalid(outdir)}
    problems = invalid_problems(outdir, expected["invalid"])
    if problems:
        raise AssertionError("; ".join(problems))
    (outdir / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return expected


def frames_for_check(rel: str, data: bytes):
    if rel in RAW_FILES:
        return data
    return split_frames(REPAIR.get(rel, lambda d: d)(data))


def same(a, b, where, problems, rel_tol=1e-12):
    if isinstance(a, float) or isinstance(b, float):
        ok = isinstance(a, (int, float)) and isinstance(b, (int, float)) and (a == b or math.isclose(a, b, rel_tol=rel_tol))
        if not ok:
            problems.append(f"expected.json {where}: committed {a!r}, regenerated {b!r}")
    elif isinstance(a, dict) and isinstance(b, dict):
        if list(a) != list(b):
            problems.append(f"expected.json {where}: keys {list(a)} vs {list(b)}")
        for k in a.keys() & b.keys():
            same(a[k], b[k], f"{where}.{k}", problems, rel_tol)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            problems.append(f"expected.json {where}: {len(a)} entries vs {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]", problems, rel_tol)
    elif a != b or type(a) is not type(b):
        problems.append(f"expected.json {where}: committed {a!r}, regenerated {b!r}")


def check_expected(path: Path, label: str, regenerated, problems):
    """Compares the committed expected.json at `path` with the regenerated one; returns the committed one, or None
    (with a problem naming `label`) when it is missing."""
    try:
        committed = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"{label} is missing")
        return None
    same(committed, regenerated, "", problems)
    return committed


def common_shards(mine: set, theirs: set, problems) -> list:
    """The shards both committed and regenerated, sorted; one problem for each that is only on one side."""
    for rel in sorted(mine ^ theirs):
        problems.append(f"{rel}: {'not generated any more' if rel in mine else 'missing'}")
    return sorted(mine & theirs)


def check() -> int:
    problems = []
    with tempfile.TemporaryDirectory(prefix="lshd-fixtures-") as tmp:
        tmp = Path(tmp)
        regenerated = build(tmp)
        committed = check_expected(HERE / "expected.json", "Fixtures/expected.json", regenerated, problems)
        for sub in ("valid", "invalid"):
            mine = {f"{sub}/{p.name}" for p in (HERE / sub).glob("*.lshd.zst")}
            theirs = {f"{sub}/{p.name}" for p in (tmp / sub).glob("*.lshd.zst")}
            for rel in common_shards(mine, theirs, problems):
                try:
                    a = frames_for_check(rel, (HERE / rel).read_bytes())
                except (ValueError, zstandard.ZstdError) as e:
                    problems.append(f"{rel}: cannot decompress the committed file: {e}")
                    continue
                if a != frames_for_check(rel, (tmp / rel).read_bytes()):
                    problems.append(f"{rel}: payload or frame layout differs from the regenerated one")
        # The committed invalid files must still fail as stated (e.g. the corrupted byte).
        if committed is not None:
            problems += invalid_problems(HERE, committed["invalid"])
    return report(problems, "Fixtures/make_fixtures.py",
                  f"fixtures OK: {len(regenerated['valid'])} valid, {len(regenerated['invalid'])} invalid, expected.json matches")


def wants_check(doc: str) -> bool:
    """Parse a generator's command line (only --check); doc is its module docstring."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="verify the committed fixtures instead of writing them")
    return ap.parse_args().check


def write_expected(path: Path, expected) -> dict:
    """Write an expected.json the way every generator does (indent 1, UTF-8, final newline); returns expected."""
    path.write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return expected


def check_subdir(subdir: str, build, script: str, summary) -> int:
    """--check of a generator that writes Fixtures/SUBDIR/*.lshd.zst and SUBDIR/expected.json: regenerate with
    build(tmp) in a temporary directory and compare expected.json, the set of shards and their payloads and frame
    layout (not compressed bytes, which depend on the zstd version). summary(expected) is the OK line."""
    problems = []
    with tempfile.TemporaryDirectory(prefix=f"lshd-{subdir}-fixtures-") as tmp:
        tmp = Path(tmp)
        regenerated = build(tmp)
        check_expected(HERE / subdir / "expected.json", f"Fixtures/{subdir}/expected.json", regenerated, problems)
        mine = {p.relative_to(HERE).as_posix() for p in (HERE / subdir).rglob("*.lshd.zst")}
        theirs = {p.relative_to(tmp).as_posix() for p in (tmp / subdir).rglob("*.lshd.zst")}
        for rel in common_shards(mine, theirs, problems):
            if split_frames((HERE / rel).read_bytes()) != split_frames((tmp / rel).read_bytes()):
                problems.append(f"{rel}: payload or frame layout differs from the regenerated one")
    # same() names the file "expected.json"; say which one. Messages that already name a path stay as they are.
    problems = [f"{subdir}/{p}" if p.startswith("expected.json ") else p for p in problems]
    return report(problems, script, summary(regenerated))


def subdir_main(doc: str, subdir: str, build, script: str, what: str, size_budget: int | None = None) -> int:
    """main() of the generator `script` of Fixtures/SUBDIR (doc is its module docstring): with --check,
    check_subdir; else build(HERE) and say what was written, with size_budget also SUBDIR/'s size (1 when over)."""
    if wants_check(doc):
        return check_subdir(subdir, build, script,
                            lambda e: f"{what} fixtures OK: {len(e['files'])} shards, {subdir}/expected.json matches")
    expected = build(HERE)
    wrote = f"wrote {len(expected['files'])} shards and {subdir}/expected.json"
    if size_budget is None:
        print(wrote)
        return 0
    total = sum(p.stat().st_size for p in (HERE / subdir).iterdir() if p.is_file())
    over = total > size_budget
    print(f"{wrote}; {subdir}/ is {total / 1e6:.2f} MB" + (f", over the {size_budget / 1e6:.1f} MB budget" if over else ""),
          file=sys.stderr if over else sys.stdout)
    return int(over)


def report(problems, script: str, ok: str) -> int:
    """Print the --check verdict; 1 when there are problems."""
    for p in problems:
        print("MISMATCH:", p, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s); rerun `python3 {script}` and review the diff", file=sys.stderr)
        return 1
    print(ok)
    return 0


def main() -> int:
    if wants_check(__doc__):
        return check()
    expected = build(HERE)
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    print(f"wrote {len(expected['valid'])} valid and {len(expected['invalid'])} invalid shards, "
          f"expected.json; Fixtures/ is {total / 1e6:.2f} MB")
    if total > SIZE_BUDGET:
        print(f"Fixtures/ exceeds the {SIZE_BUDGET / 1e6:.1f} MB budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
