"""LSHDWriter: streams one LSHD v1 shard, compressing frames in the background."""
from __future__ import annotations

import os
import queue
import secrets
import threading

import numpy as np
import zstandard

from ._convert import check_logit_dtype, encode_numpy, encode_tensor, is_tensor, labels_to_numpy, meta_bytes
from .format import HEADER, LABEL_DTYPES, LOGIT_DTYPES, MAGIC, MAX_META_LEN, MAX_NUM_CLASSES, U32, VERSION

__all__ = ["LSHDWriter", "write_shard", "encode_logits", "DEFAULT_LEVEL", "DEFAULT_FRAME_BYTES"]

# zstd level 1: on logits it compresses almost as well as level 3 at about twice the speed
# (Benchmarks/README.md, "Producer").
DEFAULT_LEVEL = 1
DEFAULT_FRAME_BYTES = 8 << 20


class LSHDWriter:
    """Writes one shard block by block to a hidden temporary file in the target directory; close() renames it.

    write() validates and converts a block on the caller's thread, cuts it into zstd frames of about
    ``frame_bytes`` payload (a large write becomes several blocks, so frames always start at a block
    boundary and smoothd decodes them in parallel) and hands the frames to ``threads`` compression
    workers. It returns at once unless more than ``max_buffer_bytes`` of payload are in flight (queued,
    being compressed, or compressed and waiting for their turn to be written): then it waits
    (backpressure). A frame in flight is its payload buffer, its compressed bytes, or (while a worker
    compresses it) both; so the writer holds at most ``max_buffer_bytes`` in flight, plus the frame being
    filled, plus the output of each compressing worker: ``max_buffer_bytes + (threads + 1) * frame_bytes``
    whatever the size of a write (plus, when logits need converting, one frame's rows of temporaries). The default
    ``max_buffer_bytes`` is ``(threads + 1) * frame_bytes``, so 48 MiB with the defaults (2 threads, 8 MiB
    frames). A frame larger than the bound (one row over ``frame_bytes``) is let through alone. Frames reach the file in order. An error in a
    worker (a full disk, say) is raised by the next write() or close(), and the temporary file is removed.

    ``frame_bytes=None`` writes the whole shard as one frame, compressed on the caller's thread in
    close() and write() (no parallel decoding; for tests and tiny shards).
    """

    def __init__(self, path, num_classes: int, logit_dtype: str = "float32", label_dtype: str = "int64",
                 ignore_index: int = -100, meta: dict | None = None, frame_bytes: int | None = DEFAULT_FRAME_BYTES,
                 threads: int = 2, level: int = DEFAULT_LEVEL, num_rows: int = 0,
                 max_buffer_bytes: int | None = None):
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
        encoded_meta = meta_bytes(meta)
        if len(encoded_meta) > MAX_META_LEN:
            raise ValueError(f"meta is {len(encoded_meta)} bytes of JSON; the limit is {MAX_META_LEN}")
        if frame_bytes is not None and int(frame_bytes) < 1:
            raise ValueError("frame_bytes must be positive (or None for one frame)")
        threads = int(threads)
        if threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}")
        if not -(1 << 17) <= int(level) <= zstandard.MAX_COMPRESSION_LEVEL:  # zstd's fast levels are negative
            raise ValueError(f"level must be at most {zstandard.MAX_COMPRESSION_LEVEL}, not {level}")
        if max_buffer_bytes is not None and int(max_buffer_bytes) < 1:
            raise ValueError("max_buffer_bytes must be positive")

        self.path = os.fspath(path)
        self.num_classes = num_classes
        self.logit_dtype = logit_dtype
        self.label_dtype = label_dtype
        self.ignore_index = ignore_index
        self.num_rows = num_rows
        self.rows_written = 0
        self.meta = meta
        self.level = int(level)
        self.threads = threads
        self.frame_bytes = None if frame_bytes is None else int(frame_bytes)
        self.max_buffer_bytes = int(max_buffer_bytes) if max_buffer_bytes is not None else (
            (threads + 1) * (self.frame_bytes or DEFAULT_FRAME_BYTES))
        self._label_store = LABEL_DTYPES[label_dtype][1]
        self._row_bytes = num_classes * LOGIT_DTYPES[logit_dtype][1].itemsize
        self._closed = False  # True once renamed into place
        self._file = None
        self._tmp = None

        # The frame being filled: one contiguous buffer (allocated when the frame starts) and its used size.
        self._frame = None
        self._fill = 0
        self._has_block = False  # the frame being filled holds a block (not only the header)
        self._next_seq = 0
        # Shared with the workers, under _cond: frames compressed but not yet written (by sequence
        # number), the next one to write, payload bytes submitted and not yet written, the first error.
        self._cond = threading.Condition()
        self._done = {}
        self._write_seq = 0
        self._writing = False
        self._inflight = 0
        self._error = None
        self._jobs = queue.SimpleQueue()
        self._workers = []
        self._single = None  # compressobj of the one frame, when frame_bytes is None

        directory, name = os.path.split(os.path.abspath(self.path))
        self._dir = directory
        # Hidden and ".tmp"-suffixed so directory watchers (the smoothd spool) never pick it up. Created
        # with mode 0666 & ~umask like any file (mkstemp's 0600 would hide it from a daemon's user).
        self._tmp = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        self._file = os.fdopen(fd, "wb", buffering=0)
        try:
            if self.frame_bytes is None:
                self._single = zstandard.ZstdCompressor(level=self.level, write_checksum=True).compressobj()
            self._add(HEADER.pack(MAGIC, VERSION, LOGIT_DTYPES[logit_dtype][0], LABEL_DTYPES[label_dtype][0],
                                  num_classes, len(encoded_meta), ignore_index, num_rows) + encoded_meta)
            if self.frame_bytes is not None:
                for i in range(threads):
                    worker = threading.Thread(target=self._work, name=f"smoothd-writer-{i}", daemon=True)
                    worker.start()
                    self._workers.append(worker)
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
    def write(self, logits, labels, *, raw: bool = False) -> int:
        """Append rows: logits [..., K] and labels [...] with the same leading shape.

        logits may be a numpy array or a torch tensor (CPU or CUDA; float32, float16, bfloat16, float64,
        integers); float16/bfloat16 tensors stored as their own dtype keep their bits exactly.
        raw=True: logits already hold the stored bit patterns (uint16/int16 for float16 and bfloat16).
        Returns the number of rows written; an empty write writes nothing. A rejected write (wrong
        shape, a bad label) raises before writing anything and leaves the writer usable.
        """
        self._check_open()
        K = self.num_classes
        tensor = is_tensor(logits)
        z = logits if tensor else np.asarray(logits)
        y = labels_to_numpy(labels)
        shape = tuple(z.shape)
        if len(shape) < 1 or shape[-1] != K:
            raise ValueError(f"logits must have shape [..., {K}], got {list(shape)}")
        if y.shape != shape[:-1]:
            raise ValueError(f"labels shape {list(y.shape)} does not match logits shape {list(shape)}")
        if y.dtype.kind not in "iu":
            raise TypeError(f"labels must be integers, got {y.dtype}")
        y = y.reshape(-1)
        rows = y.shape[0]
        if rows == 0:
            return 0
        self._check_labels(y)
        check_logit_dtype(z, self.logit_dtype, raw)
        y = y.astype(self._label_store)  # a private copy
        try:
            done = 0
            for group in _row_views(z, K, tensor):
                self._write_rows(group, y[done:done + len(group)], tensor, raw)
                done += len(group)
            self.rows_written += rows
        except BaseException:
            self.abort()  # a half-written block cannot be taken back
            raise
        return rows

    def _write_rows(self, z, y, tensor, raw) -> None:
        """Rows z [n, K] with stored labels y [n] into frames, as blocks that fill each frame."""
        rows = len(y)
        start = 0
        per_row = self._label_store.itemsize + self._row_bytes
        while start < rows:
            if self.frame_bytes is None:
                room_rows = max(1, (64 << 20) // per_row)  # convert in bounded pieces
            else:
                room_rows = (self.frame_bytes - self._fill - U32.size) // per_row
                if room_rows < 1 and self._fill > 0 and self._has_block:
                    self._submit()  # this frame is full: the next block starts a new one
                    continue
                room_rows = max(1, room_rows)
            n = min(rows - start, room_rows, 0xFFFFFFFF)
            part = z[start:start + n]
            # No defensive copy: _add copies into the frame buffer.
            stored = encode_tensor(part, self.logit_dtype, raw=raw, copy=False) if tensor else encode_numpy(
                part, self.logit_dtype, raw=raw, copy=False)
            self._add(U32.pack(n))
            self._add(y[start:start + n])
            self._add(stored.reshape(-1))
            self._has_block = True
            start += n
            if self.frame_bytes is not None and self._fill >= self.frame_bytes:
                self._submit()

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
        """Write the end marker, wait for the workers, write the last frames in order, fsync and rename."""
        if self._closed:
            return
        self._check_open()
        try:
            if self.num_rows and self.num_rows != self.rows_written:
                raise ValueError(f"num_rows was stated as {self.num_rows} but {self.rows_written} rows were written")
            self._add(U32.pack(0))
            self._submit()
            for _ in self._workers:
                self._jobs.put(None)
            for worker in self._workers:
                worker.join()
            self._workers = []
            self._raise_worker_error()
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
        """Drop the shard: stop the workers, close and remove the temporary file (safe to call more than once)."""
        with self._cond:
            if self._error is None:
                self._error = _Aborted()
            self._cond.notify_all()
        for _ in self._workers:
            self._jobs.put(None)
        for worker in self._workers:
            worker.join()
        self._workers = []
        self._frame = None
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except FileNotFoundError:
                pass
        self._tmp = None

    # -- framing and the workers -------------------------------------------------------------------
    def _check_open(self):
        if self._file is None:
            raise ValueError("the shard is already closed" if self._closed else
                             "the shard was aborted after an error; nothing was written")
        self._raise_worker_error()

    def _raise_worker_error(self):
        error = self._error
        if error is not None and not isinstance(error, _Aborted):
            self.abort()
            raise error

    def _add(self, buffer) -> None:
        """Append bytes (bytes or a C-contiguous array) to the frame being filled, copying them."""
        if self._single is not None:
            self._file.write(self._single.compress(buffer))
            return
        src = np.frombuffer(buffer, dtype=np.uint8)
        end = self._fill + len(src)
        if self._frame is None or end > len(self._frame):
            # A new frame, or (rarely) a first block larger than frame_bytes: one row over it, or big meta.
            grown = np.empty(max(self.frame_bytes, end), dtype=np.uint8)
            if self._frame is not None:
                grown[:self._fill] = self._frame[:self._fill]
            self._frame = grown
        self._frame[self._fill:end] = src
        self._fill = end

    def _submit(self) -> None:
        """Hand the frame being filled to the workers, waiting while too much is in flight."""
        if self._single is not None:
            self._file.write(self._single.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH))
            self._single = zstandard.ZstdCompressor(level=self.level, write_checksum=True).compressobj()
            return
        if not self._fill:
            return
        frame, size = self._frame, self._fill
        self._frame, self._fill, self._has_block = None, 0, False
        with self._cond:
            while self._inflight > 0 and self._inflight + size > self.max_buffer_bytes and self._error is None:
                self._cond.wait()
            self._inflight += size
        self._raise_worker_error()
        self._jobs.put((self._next_seq, frame, size))
        self._next_seq += 1

    def _work(self) -> None:
        cctx = zstandard.ZstdCompressor(level=self.level, write_checksum=True)
        while True:
            job = self._jobs.get()
            if job is None:
                return
            seq, frame, size = job
            del job
            data = None
            if self._error is None:
                try:
                    data = cctx.compress(frame[:size])  # one-shot: the frame header states its content size
                except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                    self._fail(e)
            del frame
            self._deliver(seq, data, size)

    def _deliver(self, seq, data, size) -> None:
        """Record a compressed frame; whoever finds the next frame ready writes the run of ready ones, in order."""
        with self._cond:
            self._done[seq] = (data, size)
            if self._writing:
                return
            self._writing = True
            try:
                while self._write_seq in self._done:
                    data, size = self._done.pop(self._write_seq)
                    self._write_seq += 1
                    if data is not None and self._error is None:
                        self._cond.release()
                        try:
                            self._file.write(data)
                        except BaseException as e:  # noqa: BLE001
                            self._fail(e)
                        finally:
                            self._cond.acquire()
                    self._inflight -= size
                    self._cond.notify_all()
            finally:
                self._writing = False

    def _fail(self, error) -> None:
        with self._cond:
            if self._error is None:
                self._error = error
            self._cond.notify_all()


def _row_views(z, K: int, tensor: bool):
    """[n, K] views of z's rows in order, without copying: a write's logits that cannot be viewed as rows
    (``logits[:, :-1]`` of a [B, T, V] tensor) are walked along their leading dimension instead of being
    made contiguous as a whole."""
    if z.ndim <= 2:
        yield z.reshape(-1, K)  # a view: the last dimension is K and at most one other
        return
    if tensor:
        try:
            yield z.view(-1, K)  # raises instead of copying
            return
        except RuntimeError:
            pass
    else:
        # numpy's reshape would copy silently (and even setting .shape copies before it refuses): check
        # that each leading dimension steps over whole runs of the next, ignoring dimensions of size 1.
        dims = [(n, st) for n, st in zip(z.shape[:-1], z.strides[:-1]) if n != 1]
        if all(dims[i][1] == dims[i + 1][0] * dims[i + 1][1] for i in range(len(dims) - 1)):
            rows = int(np.prod(z.shape[:-1]))
            step = dims[-1][1] if dims else z.strides[-1] * K
            yield np.lib.stride_tricks.as_strided(z, shape=(rows, K), strides=(step, z.strides[-1]), writeable=False)
            return
    for sub in z:
        yield from _row_views(sub, K, tensor)


class _Aborted(Exception):
    """Marks a writer stopped by abort(): workers skip their frames."""


def write_shard(path, logits, labels, num_classes: int | None = None, **kw) -> str:
    """Write a whole shard from in-memory arrays. num_classes defaults to logits.shape[-1]."""
    if not hasattr(logits, "shape"):
        logits = np.asarray(logits)  # nested lists
    if num_classes is None:
        num_classes = logits.shape[-1]
    with LSHDWriter(path, num_classes, **kw) as w:
        w.write(logits, labels)
    return os.fspath(path)


def encode_logits(logits, logit_dtype: str, *, raw: bool = False) -> np.ndarray:
    """Logits (numpy or torch, any float dtype) in their stored little-endian form (bfloat16 as uint16 bits)."""
    if logit_dtype not in LOGIT_DTYPES:
        raise ValueError(f"logit_dtype must be one of {sorted(LOGIT_DTYPES)}, not {logit_dtype!r}")
    if is_tensor(logits):
        return encode_tensor(logits, logit_dtype, raw=raw)
    return encode_numpy(np.asarray(logits), logit_dtype, raw=raw)
