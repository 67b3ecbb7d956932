"""The fixtures' own LSHD v1 writer (see docs/SHARD-FORMAT.md), kept independent of the smoothd package.

Fixtures/make_fixtures.py writes the valid fixtures with it, so the fixtures do not depend on the code
they test (producers use the package in python/: ``pip install ./python``, ``smoothd.LSHDWriter``).
Needs numpy and zstandard; torch is optional (tensors are accepted, never required).

    with LSHDWriter("val-00000.lshd.zst", num_classes=K, logit_dtype="bfloat16", frame_bytes=1 << 20) as w:
        w.write(logits, labels)   # [..., K] and [...]; one block per write()
"""
from __future__ import annotations

import json
import os
import secrets
import struct

import numpy as np
import zstandard

__all__ = ["LSHDWriter", "write_shard", "encode_logits", "LOGIT_DTYPES", "LABEL_DTYPES",
           "MAGIC", "VERSION", "MAX_NUM_CLASSES", "MAX_META_LEN"]

MAGIC = b"LSHD"
VERSION = 1
MAX_NUM_CLASSES = 16_777_216
MAX_META_LEN = 1_048_576
# name -> (code in the header, little-endian storage dtype)
LOGIT_DTYPES = {"float32": (1, np.dtype("<f4")), "float16": (2, np.dtype("<f2")), "bfloat16": (3, np.dtype("<u2"))}
LABEL_DTYPES = {"int32": (1, np.dtype("<i4")), "int64": (2, np.dtype("<i8"))}
_HEADER = struct.Struct("<4sHBBIIqQ")
_U32 = struct.Struct("<I")
# Convert and compress logits in chunks of about this many bytes, so a huge write() stays bounded.
_CHUNK_BYTES = 8 << 20


def _to_numpy(x):
    """numpy view of an array or torch tensor (torch is never imported here)."""
    if hasattr(x, "detach"):
        t = x.detach()
        if str(t.dtype) == "torch.bfloat16":  # numpy has no bfloat16: widen exactly first
            t = t.float()
        return t.cpu().numpy()
    return np.asarray(x)


def _f64_to_f32_round_to_odd(x):
    """float64 -> float32 rounded to odd, as uint32 bits.

    Rounding to odd keeps the sticky information, so a second round-to-nearest-even to a format with
    at least two fewer bits (bfloat16 has 8 vs 24) equals one correct rounding of the float64 value.
    """
    f = x.astype(np.float32)  # round to nearest even (overflow -> inf)
    back = f.astype(np.float64)
    inexact = (back != x) & np.isfinite(x)
    bits = f.view(np.uint32).copy()
    # Sign-magnitude: subtracting one from the bits moves one step toward zero (inf -> max finite).
    bits[inexact & (np.abs(back) > np.abs(x))] -= np.uint32(1)
    bits[inexact] |= np.uint32(1)
    return bits


def _to_bfloat16_bits(x):
    """Round to nearest even bfloat16 bits (uint16); NaN stays NaN (made quiet), overflow gives inf."""
    if x.dtype == np.float64:
        bits = _f64_to_f32_round_to_odd(x)
    else:
        bits = x.astype(np.float32).view(np.uint32)
    # Add 0x7FFF plus the lowest kept bit, then drop 16 bits: ties go to the even neighbour.
    # Only NaN bit patterns can wrap around, and they are replaced below.
    rounded = (bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))) >> np.uint32(16)
    nan = (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    quiet_nan = (bits >> np.uint32(16)) | np.uint32(0x0040)
    return np.where(nan, quiet_nan, rounded).astype("<u2")


def encode_logits(logits, logit_dtype: str) -> np.ndarray:
    """Logits (any float dtype) in the stored little-endian representation (bfloat16 as uint16 bits)."""
    x = _to_numpy(logits)
    if x.dtype not in (np.float16, np.float32, np.float64):
        x = x.astype(np.float32)  # integers, or a registered bfloat16 dtype such as ml_dtypes'
    with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf is the IEEE result we want
        if logit_dtype == "bfloat16":
            return _to_bfloat16_bits(x)
        # numpy's float64 -> float16 cast rounds once to nearest even, as IEEE requires.
        return x.astype(LOGIT_DTYPES[logit_dtype][1])


class LSHDWriter:
    """Streams one LSHD v1 shard, one block per write(), to a temporary file renamed on close().

    frame_bytes=N ends the current zstd frame after any block that brings it to N or more payload
    bytes, so every frame after the first starts at a block header and frames can be decoded in
    parallel. Without it the shard is one streaming frame (no content size). The content checksum is on.
    """

    def __init__(self, path, num_classes: int, logit_dtype: str = "float32", label_dtype: str = "int64",
                 ignore_index: int = -100, meta: dict | None = None, num_rows: int = 0, level: int = 3,
                 frame_bytes: int | None = None):
        if logit_dtype not in LOGIT_DTYPES:
            raise ValueError(f"logit_dtype must be one of {sorted(LOGIT_DTYPES)}, not {logit_dtype!r}")
        if label_dtype not in LABEL_DTYPES:
            raise ValueError(f"label_dtype must be one of {sorted(LABEL_DTYPES)}, not {label_dtype!r}")
        num_classes = int(num_classes)
        if not 2 <= num_classes <= MAX_NUM_CLASSES:
            raise ValueError(f"num_classes must be in [2, {MAX_NUM_CLASSES}], not {num_classes}")
        ignore_index = int(ignore_index)
        if not -(1 << 63) <= ignore_index < (1 << 63):
            raise ValueError("ignore_index must fit in int64")
        num_rows = int(num_rows)
        if not 0 <= num_rows < (1 << 64):
            raise ValueError("num_rows must fit in uint64 (0 = not stated)")
        if meta is None:
            meta_bytes = b""
        elif isinstance(meta, dict):
            meta_bytes = json.dumps(meta, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
        else:
            raise TypeError("meta must be a dict (a JSON object) or None")
        if len(meta_bytes) > MAX_META_LEN:
            raise ValueError(f"meta is {len(meta_bytes)} bytes of JSON; the limit is {MAX_META_LEN}")
        if frame_bytes is not None and frame_bytes < 1:
            raise ValueError("frame_bytes must be positive (or None for one frame)")

        self.path = os.fspath(path)
        self.num_classes = num_classes
        self.logit_dtype = logit_dtype
        self.label_dtype = label_dtype
        self.ignore_index = ignore_index
        self.num_rows = num_rows
        self.rows_written = 0
        self._frame_bytes = frame_bytes
        self._cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
        self._cobj = None  # compressobj of the open frame, if any
        self._in_frame = 0  # payload bytes written since the open frame started
        self._closed = False  # True once renamed into place

        directory, name = os.path.split(os.path.abspath(self.path))
        self._dir = directory
        # Hidden and ".tmp"-suffixed so directory watchers (the smoothd spool) never pick it up. Created
        # with mode 0666 & ~umask like any file (mkstemp's 0600 would hide it from a daemon's user).
        self._tmp = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        self._file = os.fdopen(fd, "wb")
        try:
            self._emit(_HEADER.pack(MAGIC, VERSION, LOGIT_DTYPES[logit_dtype][0], LABEL_DTYPES[label_dtype][0],
                                    num_classes, len(meta_bytes), ignore_index, num_rows) + meta_bytes)
        except BaseException:
            self.abort()
            raise

    # -- context manager -------------------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    # -- writing ---------------------------------------------------------------------------------
    def write(self, logits, labels) -> int:
        """Append one block: logits [..., K] and labels [...] with the same leading shape.

        Returns the number of rows written (an empty write writes nothing: a block has >= 1 rows).
        """
        self._check_open()
        K = self.num_classes
        # Logits stay as given (possibly a GPU tensor) and are converted a chunk of rows at a time.
        z = logits if hasattr(logits, "detach") else np.asarray(logits)
        y = _to_numpy(labels)
        shape = tuple(z.shape)
        if len(shape) < 1 or shape[-1] != K:
            raise ValueError(f"logits must have shape [..., {K}], got {list(shape)}")
        if y.shape != shape[:-1]:
            raise ValueError(f"labels shape {list(y.shape)} does not match logits shape {list(shape)}")
        if y.dtype.kind not in "iu":
            raise TypeError(f"labels must be integers, got {y.dtype}")
        z = z.reshape(-1, K)
        y = y.reshape(-1)
        rows = y.shape[0]
        if rows == 0:
            return 0
        if rows > 0xFFFFFFFF:
            raise ValueError("a block holds at most 2**32 - 1 rows; split the write")
        self._check_labels(y)

        try:
            self._emit(_U32.pack(rows) + y.astype(LABEL_DTYPES[self.label_dtype][1]).tobytes())
            step = max(1, _CHUNK_BYTES // (8 * K))  # conversion may go through float32 or float64
            for start in range(0, rows, step):
                self._emit(encode_logits(z[start:start + step], self.logit_dtype).tobytes())
            self.rows_written += rows
            if self._frame_bytes is not None and self._in_frame >= self._frame_bytes:
                self._end_frame()
        except BaseException:
            self.abort()  # a half-written block cannot be taken back
            raise
        return rows

    def _check_labels(self, y):
        ok = ((y >= 0) & (y < self.num_classes)) | (y == self.ignore_index)
        if not ok.all():
            i = int(np.argmin(ok))
            raise ValueError(f"label {int(y[i])} at row {i} is neither in [0, {self.num_classes}) "
                             f"nor ignore_index {self.ignore_index}")
        fits_int32 = -(1 << 31) <= self.ignore_index < (1 << 31)
        if self.label_dtype == "int32" and not fits_int32 and (y == self.ignore_index).any():
            raise ValueError(f"ignore_index {self.ignore_index} does not fit the int32 label dtype")

    def close(self) -> None:
        """Write the end marker, finish the frame, fsync and rename to the final path."""
        if self._closed:
            return
        self._check_open()
        try:
            if self.num_rows and self.num_rows != self.rows_written:
                raise ValueError(f"num_rows was stated as {self.num_rows} but {self.rows_written} rows were written")
            self._emit(_U32.pack(0))
            self._end_frame()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            os.replace(self._tmp, self.path)
            self._tmp = None
            self._closed = True
        except BaseException:
            self.abort()
            raise
        # Make the rename itself durable.
        dfd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def abort(self) -> None:
        """Drop the shard: close and remove the temporary file (safe to call more than once)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except FileNotFoundError:
                pass
        self._tmp = None

    # -- zstd framing ----------------------------------------------------------------------------
    def _check_open(self):
        if self._file is None:
            raise ValueError("the shard is already closed" if self._closed else
                             "the shard was aborted after an error; nothing was written")

    def _emit(self, data: bytes) -> None:
        if self._cobj is None:
            self._cobj = self._cctx.compressobj()
            self._in_frame = 0
        self._file.write(self._cobj.compress(data))
        self._in_frame += len(data)

    def _end_frame(self) -> None:
        if self._cobj is not None:
            self._file.write(self._cobj.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH))
            self._cobj = None


def write_shard(path, logits, labels, num_classes: int | None = None, **kw) -> str:
    """Write a whole shard from in-memory arrays as one block. num_classes defaults to logits.shape[-1]."""
    if not hasattr(logits, "shape"):
        logits = np.asarray(logits)  # nested lists
    if num_classes is None:
        num_classes = logits.shape[-1]
    with LSHDWriter(path, num_classes, **kw) as w:
        w.write(logits, labels)
    return os.fspath(path)
