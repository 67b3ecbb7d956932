"""LSHDWriter and write_shard: contract, framing, conversion, background errors, backpressure.

Shards are read back with the independent reader in Fixtures/reference.py. torch tests run when torch
is importable (Scripts/check-torch); everything else needs numpy and zstandard only.
"""
import errno
import os
import stat
import struct
import time
import unittest

from support import HAVE_TORCH, TempDirCase

import numpy as np
import zstandard

import reference
import smoothd
from smoothd.writer import encode_logits


def bf16_nearest_even(x32):
    """Reference rounding of float32 values to bfloat16 bits, by comparing the two neighbours."""
    bits = x32.view(np.uint32)
    lo = bits & np.uint32(0xFFFF0000)  # toward zero
    hi = lo + np.uint32(0x10000)  # away from zero (may be inf)
    as_f = lambda b: b.view(np.float32).astype(np.float64)  # noqa: E731
    d_lo = np.abs(as_f(lo) - x32.astype(np.float64))
    d_hi = np.abs(as_f(hi) - x32.astype(np.float64))
    take_hi = (d_hi < d_lo) | ((d_hi == d_lo) & (((lo >> np.uint32(16)) & np.uint32(1)) == 1))
    return (np.where(take_hi, hi, lo) >> np.uint32(16)).astype(np.uint16)


def frame_payloads(data):
    """Decompressed payload of each zstd frame in data."""
    out = []
    while data:
        dobj = zstandard.ZstdDecompressor().decompressobj()
        out.append(dobj.decompress(data))
        assert dobj.eof
        data = dobj.unused_data
    return out


def read_back(path):
    it = reference.read_shard(path)
    header = next(it)
    chunks = list(it)
    y = np.concatenate([c[0] for c in chunks]) if chunks else np.zeros(0, np.int64)
    z = np.concatenate([c[1] for c in chunks]) if chunks else np.zeros((0, header["num_classes"]))
    return header, y, z


def block_starts(payload: bytes, label_width: int, logit_width: int):
    """Payload offsets of every block header and the end marker, walking the payload."""
    _, _, _, _, K, meta_len, _, _ = struct.unpack_from("<4sHBBIIqQ", payload)
    at, starts = 32 + meta_len, []
    while True:
        starts.append(at)
        (rows,) = struct.unpack_from("<I", payload, at)
        if rows == 0:
            return starts
        at += 4 + rows * (label_width + K * logit_width)


class BFloat16Rounding(unittest.TestCase):
    def test_random_float32_bit_patterns(self):
        bits = np.random.default_rng(0).integers(0, 2 ** 32, 200_000, dtype=np.uint64).astype(np.uint32)
        x = bits.view(np.float32)
        finite = np.isfinite(x) & (np.abs(x) < np.float32(3.38e38))  # keep hi from wrapping past inf
        got = encode_logits(x, "bfloat16")
        np.testing.assert_array_equal(got[finite], bf16_nearest_even(x[finite]))

    def test_ties_nan_overflow(self):
        x = np.array([1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8), np.nan, -np.nan, np.inf, 3.4e38, 1e-45],
                     dtype=np.float32)
        got = encode_logits(x, "bfloat16")
        self.assertEqual([hex(v) for v in got[:3]], ["0x3f80", "0x3f82", "0xbf80"])  # ties to even
        back = reference.decode_logits(got, "bfloat16")
        self.assertTrue(np.isnan(back[3]) and np.isnan(back[4]))
        self.assertEqual(back[5], np.inf)
        self.assertEqual(back[6], np.inf)  # above bfloat16's largest finite value: rounds to inf
        self.assertEqual(back[7], 0.0)

    def test_float64_rounds_once(self):
        # float64 -> float32 would round this to the tie 1 + 2**-8, and the tie would go down to 1.0.
        v = np.array([1 + 2 ** -8 + 2 ** -30, -(1 + 2 ** -8 + 2 ** -30)])
        self.assertEqual([hex(b) for b in encode_logits(v, "bfloat16")], ["0x3f81", "0xbf81"])

    @unittest.skipUnless(HAVE_TORCH, "torch not installed")
    def test_matches_torch_for_float32(self):
        import torch
        x = torch.randn(100_000) * 100
        want = x.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
        np.testing.assert_array_equal(encode_logits(x, "bfloat16"), want)


class WriterTestCase(TempDirCase):
    """Writer tests with a scratch directory."""


class Contract(WriterTestCase):
    def test_round_trip_and_frames_at_block_boundaries(self):
        rng = np.random.default_rng(1)
        K = 13
        z = rng.standard_normal((4, 25, K)).astype(np.float32)
        y = rng.integers(0, K, (4, 25))
        y[0, :3] = -100
        path = self.dir / "a.lshd.zst"
        with smoothd.LSHDWriter(path, K, logit_dtype="float16", label_dtype="int32", meta={"split": "é"},
                                frame_bytes=1500) as w:
            for b in range(4):
                self.assertEqual(w.write(z[b], y[b]), 25)
            self.assertEqual(w.write(z[:0], y[:0]), 0)  # empty: no block
        header, got_y, got_z = read_back(path)
        self.assertEqual((header["num_classes"], header["logit_dtype"], header["label_dtype"], header["meta"]),
                         (K, "float16", "int32", {"split": "é"}))
        np.testing.assert_array_equal(got_y, y.reshape(-1))
        np.testing.assert_array_equal(got_z, z.reshape(-1, K).astype(np.float16).astype(np.float64))
        frames = frame_payloads(path.read_bytes())
        self.assertGreater(len(frames), 2)
        starts = set(block_starts(b"".join(frames), 4, 2))
        offset = len(frames[0])
        for f in frames[1:]:  # every later frame starts at a block header (or the end marker)
            self.assertIn(offset, starts)
            offset += len(f)
        self.assertEqual([p.name for p in self.dir.iterdir()], ["a.lshd.zst"])
        umask = os.umask(0)
        os.umask(umask)
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o666 & ~umask)

    def test_a_large_write_becomes_frames_of_about_frame_bytes(self):
        K, rows, frame = 1000, 600, 256 << 10
        rng = np.random.default_rng(2)
        z = rng.standard_normal((rows, K)).astype(np.float32)
        y = rng.integers(0, K, rows)
        path = self.dir / "big.lshd.zst"
        with smoothd.LSHDWriter(path, K, frame_bytes=frame, threads=3) as w:
            w.write(z, y)  # 2.4 MB in one call
        frames = frame_payloads(path.read_bytes())
        row = 8 + 4 * K
        self.assertGreaterEqual(len(frames), 9)
        for f in frames[:-1]:
            self.assertLessEqual(len(f), frame)
            self.assertGreater(len(f), frame - row - 4)
        starts = set(block_starts(b"".join(frames), 8, 4))
        offset = 0
        for f in frames[:-1]:
            offset += len(f)
            self.assertIn(offset, starts)
        _, got_y, got_z = read_back(path)
        np.testing.assert_array_equal(got_y, y)
        np.testing.assert_array_equal(got_z, z.astype(np.float64))

    def test_default_shards_are_multi_frame_with_content_sizes_and_checksums(self):
        K = 4096
        z = np.random.default_rng(3).standard_normal((1200, K)).astype(np.float32)  # 19.7 MB
        path = self.dir / "d.lshd.zst"
        with smoothd.LSHDWriter(path, K) as w:
            w.write(z, np.zeros(1200, np.int64))
        data = path.read_bytes()
        frames = frame_payloads(data)
        self.assertEqual(len(frames), 3)
        params = zstandard.get_frame_parameters(data[:18])
        self.assertEqual(params.content_size, len(frames[0]))
        self.assertTrue(params.has_checksum)
        self.assertLessEqual(params.window_size, 8 << 20)  # what smoothd accepts

    def test_batch_time_vocab_flattening_and_write_shard(self):
        z = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
        y = np.array([[0, 1, 2], [3, -100, 0]])
        smoothd.write_shard(self.dir / "b.lshd.zst", z, y, num_rows=6)
        header, got_y, got_z = read_back(self.dir / "b.lshd.zst")
        self.assertEqual(header["num_rows"], 6)
        np.testing.assert_array_equal(got_z, z.reshape(6, 4))
        np.testing.assert_array_equal(got_y, y.reshape(6))

    def test_one_frame_when_frame_bytes_is_none(self):
        z = np.random.default_rng(4).standard_normal((300, 50)).astype(np.float32)
        path = self.dir / "one.lshd.zst"
        with smoothd.LSHDWriter(path, 50, frame_bytes=None) as w:
            for i in range(0, 300, 7):
                w.write(z[i:i + 7], np.ones(len(z[i:i + 7]), np.int64))
        self.assertEqual(len(frame_payloads(path.read_bytes())), 1)
        np.testing.assert_array_equal(read_back(path)[2], z.astype(np.float64))

    def test_exception_leaves_nothing(self):
        with self.assertRaises(RuntimeError):
            with smoothd.LSHDWriter(self.dir / "c.lshd.zst", 3) as w:
                w.write(np.zeros((2, 3)), np.array([0, 1]))
                raise RuntimeError("model crashed")
        self.assertEqual(list(self.dir.iterdir()), [])

    def test_num_rows_mismatch_leaves_nothing(self):
        with self.assertRaisesRegex(ValueError, "num_rows was stated as 5 but 2 rows were written"):
            with smoothd.LSHDWriter(self.dir / "d.lshd.zst", 3, num_rows=5) as w:
                w.write(np.zeros((2, 3)), np.array([0, 1]))
        self.assertEqual(list(self.dir.iterdir()), [])

    def test_rejected_write_writes_nothing(self):
        with smoothd.LSHDWriter(self.dir / "e.lshd.zst", 3, ignore_index=-1) as w:
            with self.assertRaisesRegex(ValueError, r"label 3 at row 1 is neither in \[0, 3\) nor ignore_index -1"):
                w.write(np.zeros((2, 3)), np.array([0, 3]))  # label == K
            with self.assertRaisesRegex(ValueError, r"logits must have shape \[\.\.\., 3\], got \[2, 4\]"):
                w.write(np.zeros((2, 4)), np.array([0, 1]))
            with self.assertRaisesRegex(ValueError, "labels shape"):
                w.write(np.zeros((2, 3)), np.array([0, 1, 2]))
            with self.assertRaisesRegex(TypeError, "labels must be integers"):
                w.write(np.zeros((2, 3)), np.array([0.0, 1.0]))
            w.write(np.zeros((2, 3)), np.array([-1, 2]))
        _, got_y, _ = read_back(self.dir / "e.lshd.zst")
        np.testing.assert_array_equal(got_y, [-1, 2])

    def test_bad_arguments(self):
        for kwargs, message in ((dict(num_classes=1), r"num_classes must be in \[2, 16777216\], not 1"),
                                (dict(logit_dtype="float64"), "logit_dtype must be one of"),
                                (dict(label_dtype="int8"), "label_dtype must be one of"),
                                (dict(threads=0), "threads must be at least 1"),
                                (dict(frame_bytes=0), "frame_bytes must be positive")):
            args = dict(num_classes=3)
            args.update(kwargs)
            with self.assertRaisesRegex(ValueError, message):
                smoothd.LSHDWriter(self.dir / "x.lshd.zst", **args)
        self.assertEqual(list(self.dir.iterdir()), [])

    def test_zero_rows(self):
        smoothd.LSHDWriter(self.dir / "f.lshd.zst", 2).close()
        payload = frame_payloads((self.dir / "f.lshd.zst").read_bytes())
        self.assertEqual(b"".join(payload)[32:], b"\0\0\0\0")

    def test_closed_and_aborted_writers_refuse_writes(self):
        w = smoothd.LSHDWriter(self.dir / "g.lshd.zst", 2)
        w.close()
        w.close()  # a second close is a no-op
        with self.assertRaisesRegex(ValueError, "already closed"):
            w.write(np.zeros((1, 2)), np.zeros(1, np.int64))
        w = smoothd.LSHDWriter(self.dir / "h.lshd.zst", 2)
        w.abort()
        with self.assertRaisesRegex(ValueError, "aborted"):
            w.write(np.zeros((1, 2)), np.zeros(1, np.int64))
        self.assertEqual([p.name for p in self.dir.iterdir()], ["g.lshd.zst"])

    def test_raw_bits_from_numpy(self):
        z = np.random.default_rng(5).standard_normal((40, 9)).astype(np.float32)
        bits = encode_logits(z, "bfloat16")
        with smoothd.LSHDWriter(self.dir / "r.lshd.zst", 9, logit_dtype="bfloat16") as w:
            w.write(bits, np.zeros(40, np.int64), raw=True)
            with self.assertRaisesRegex(TypeError, "raw bfloat16 logits must be 2-byte integers"):
                w.write(z, np.zeros(40, np.int64), raw=True)
        np.testing.assert_array_equal(read_back(self.dir / "r.lshd.zst")[2], reference.decode_logits(bits, "bfloat16"))

    def test_strided_batches_are_not_copied_whole(self):
        import tracemalloc
        z = np.random.default_rng(6).standard_normal((8, 101, 1000)).astype(np.float32)  # [B, T, V]
        y = np.random.default_rng(7).integers(0, 1000, (8, 101))
        sliced = z[:, :-1]  # not viewable as rows: reshape would copy all 3.2 MB
        path = self.dir / "strided.lshd.zst"
        with smoothd.LSHDWriter(path, 1000, frame_bytes=64 << 10) as w:
            tracemalloc.start()
            w.write(sliced, y[:, 1:])
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        self.assertLess(peak, sliced.nbytes / 2)
        _, got_y, got_z = read_back(path)
        np.testing.assert_array_equal(got_z, sliced.reshape(-1, 1000).astype(np.float64))
        np.testing.assert_array_equal(got_y, y[:, 1:].reshape(-1))

    def test_caller_may_reuse_its_buffer_after_write(self):
        z = np.ones((50, 8), np.float32)
        with smoothd.LSHDWriter(self.dir / "s.lshd.zst", 8, frame_bytes=1 << 20) as w:
            w.write(z, np.zeros(50, np.int64))
            z[:] = 7.0  # the writer copied it; the frame is still waiting for close()
        np.testing.assert_array_equal(read_back(self.dir / "s.lshd.zst")[2], np.ones((50, 8)))


class BackgroundCompression(WriterTestCase):
    def test_worker_error_surfaces_at_the_next_write_and_removes_the_file(self):
        w = smoothd.LSHDWriter(self.dir / "full.lshd.zst", 100, frame_bytes=4096)

        class FullDisk:
            def __init__(self, f):
                self.f = f

            def write(self, data):
                raise OSError(errno.ENOSPC, "No space left on device")

            def __getattr__(self, name):
                return getattr(self.f, name)

        w._file = FullDisk(w._file)
        z = np.zeros((20, 100), np.float32)
        with self.assertRaises(OSError) as caught:
            for _ in range(1000):  # the first frames go to the workers; a later write sees the failure
                w.write(z, np.zeros(20, np.int64))
        self.assertEqual(caught.exception.errno, errno.ENOSPC)
        self.assertEqual(list(self.dir.iterdir()), [])
        with self.assertRaisesRegex(ValueError, "aborted"):
            w.close()

    def test_worker_error_surfaces_at_close(self):
        w = smoothd.LSHDWriter(self.dir / "late.lshd.zst", 10)
        w.write(np.zeros((5, 10)), np.zeros(5, np.int64))  # stays in the frame being filled until close
        real = w._file

        class Broken:
            def write(self, data):
                raise OSError(errno.EIO, "Input/output error")

            def __getattr__(self, name):
                return getattr(real, name)

        w._file = Broken()
        with self.assertRaises(OSError) as caught:
            w.close()
        self.assertEqual(caught.exception.errno, errno.EIO)
        self.assertEqual(list(self.dir.iterdir()), [])

    def test_backpressure_keeps_payload_in_flight_within_the_bound(self):
        frame, bound = 64 << 10, 3 * (64 << 10)
        w = smoothd.LSHDWriter(self.dir / "bp.lshd.zst", 1000, frame_bytes=frame, max_buffer_bytes=bound, threads=2)
        seen = []
        real = w._file

        class SlowFile:  # a slow disk: frames pile up unless write() waits
            def write(self, data):
                seen.append(w._inflight)
                time.sleep(0.002)
                return real.write(data)

            def __getattr__(self, name):
                return getattr(real, name)

        w._file = SlowFile()
        z = np.zeros((64, 1000), np.float32)  # 256 KB per write: four frames
        for _ in range(10):
            w.write(z, np.zeros(64, np.int64))
            seen.append(w._inflight)
        w.close()
        self.assertLessEqual(max(seen), bound)
        self.assertGreater(len(seen), 40)
        self.assertEqual(len(read_back(self.dir / "bp.lshd.zst")[1]), 640)


class Meta(WriterTestCase):
    def test_numpy_scalars_and_zero_d_arrays_become_numbers(self):
        meta = {"step": np.int64(500), "loss": np.float32(0.25), "ok": np.bool_(True), "lr": np.array(1e-4),
                "nested": {"rank": np.int32(3), "list": [np.uint8(7), 1.5, None, "x"]}}
        with smoothd.LSHDWriter(self.dir / "m.lshd.zst", 2, meta=meta):
            pass
        got = read_back(self.dir / "m.lshd.zst")[0]["meta"]
        self.assertEqual(got, {"step": 500, "loss": 0.25, "ok": True, "lr": 1e-4,
                               "nested": {"rank": 3, "list": [7, 1.5, None, "x"]}})
        self.assertIsInstance(got["step"], int)

    def test_non_finite_and_non_json_values_name_the_key(self):
        cases = [({"loss": float("nan")}, ValueError, r"meta\['loss'\]: nan is not valid JSON"),
                 ({"a": {"b": np.float64("inf")}}, ValueError, r"meta\['a'\]\['b'\]: inf is not valid JSON"),
                 ({"a": [1, -np.inf]}, ValueError, r"meta\['a'\]\[1\]: -inf"),
                 ({"when": object()}, TypeError, r"meta\['when'\]: object is not a JSON value"),
                 ({"v": np.zeros(3)}, TypeError, r"meta\['v'\]: an array of shape \[3\] is not a scalar"),
                 ({1: "x"}, TypeError, r"meta\[1\]: keys must be strings"),
                 ({"c": 1 + 2j}, TypeError, r"meta\['c'\]: complex is not a JSON value")]
        for meta, kind, message in cases:
            with self.assertRaisesRegex(kind, message):
                smoothd.LSHDWriter(self.dir / "bad.lshd.zst", 2, meta=meta)
        with self.assertRaisesRegex(TypeError, "meta must be a dict"):
            smoothd.LSHDWriter(self.dir / "bad.lshd.zst", 2, meta=[1])
        with self.assertRaisesRegex(ValueError, "meta is 1048584 bytes of JSON; the limit is 1048576"):
            smoothd.LSHDWriter(self.dir / "bad.lshd.zst", 2, meta={"x": "a" * (1 << 20)})
        self.assertEqual(list(self.dir.iterdir()), [])

    @unittest.skipUnless(HAVE_TORCH, "torch not installed")
    def test_torch_scalars_and_zero_d_tensors(self):
        import torch
        meta = {"step": torch.tensor(120), "loss": torch.tensor(0.5), "half": torch.tensor(2.0, dtype=torch.bfloat16)}
        with smoothd.LSHDWriter(self.dir / "t.lshd.zst", 2, meta=meta):
            pass
        self.assertEqual(read_back(self.dir / "t.lshd.zst")[0]["meta"], {"step": 120, "loss": 0.5, "half": 2.0})
        with self.assertRaisesRegex(ValueError, r"meta\['loss'\]: nan"):
            smoothd.LSHDWriter(self.dir / "u.lshd.zst", 2, meta={"loss": torch.tensor(float("nan"))})
        with self.assertRaisesRegex(TypeError, r"meta\['v'\]: an array of shape \[2\]"):
            smoothd.LSHDWriter(self.dir / "u.lshd.zst", 2, meta={"v": torch.zeros(2)})


@unittest.skipUnless(HAVE_TORCH, "torch not installed")
class Torch(WriterTestCase):
    def test_half_tensors_are_written_as_their_bits(self):
        import torch
        for dtype, name in ((torch.bfloat16, "bfloat16"), (torch.float16, "float16")):
            lin = torch.nn.Linear(4, 7).to(dtype)
            logits = lin(torch.randn(2, 5, 4, dtype=dtype))  # [B, T, V], requires grad
            labels = torch.randint(0, 7, (2, 5))
            labels[1, 3:] = -100
            path = self.dir / f"{name}.lshd.zst"
            smoothd.write_shard(path, logits, labels, logit_dtype=name)
            _, got_y, got_z = read_back(path)
            np.testing.assert_array_equal(got_z, logits.detach().double().reshape(-1, 7).numpy())
            np.testing.assert_array_equal(got_y, labels.reshape(-1).numpy())

    def test_conversions_between_dtypes_and_non_contiguous_tensors(self):
        import torch
        x = torch.randn(30, 11) * 20
        for source in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
            for target in ("float32", "float16", "bfloat16"):
                t = x.to(source).t().contiguous().t()  # non-contiguous view
                path = self.dir / f"c-{source}-{target}.lshd.zst"
                smoothd.write_shard(path, t, torch.zeros(30, dtype=torch.long), logit_dtype=target)
                want = encode_logits(t.double().numpy() if source == torch.float64 else t.float().numpy(), target)
                np.testing.assert_array_equal(read_back(path)[2], reference.decode_logits(want, target))

    def test_strided_tensor_batches(self):
        import torch
        z = torch.randn(3, 9, 50).to(torch.bfloat16)
        path = self.dir / "strided-t.lshd.zst"
        smoothd.write_shard(path, z[:, 1:], torch.zeros(3, 8, dtype=torch.long), logit_dtype="bfloat16",
                            frame_bytes=512)
        np.testing.assert_array_equal(read_back(path)[2], z[:, 1:].double().reshape(-1, 50).numpy())

    def test_reused_tensor_after_write(self):
        import torch
        t = torch.ones(10, 4, dtype=torch.bfloat16)
        with smoothd.LSHDWriter(self.dir / "reuse.lshd.zst", 4, logit_dtype="bfloat16") as w:
            w.write(t, torch.zeros(10, dtype=torch.long))
            t.fill_(3.0)
        np.testing.assert_array_equal(read_back(self.dir / "reuse.lshd.zst")[2], np.ones((10, 4)))

    @unittest.skipUnless(HAVE_TORCH and __import__("torch").cuda.is_available(), "no CUDA device")
    def test_cuda_tensors(self):
        import torch
        t = torch.randn(64, 300, device="cuda").to(torch.bfloat16)
        path = self.dir / "cuda.lshd.zst"
        smoothd.write_shard(path, t, torch.zeros(64, dtype=torch.long, device="cuda"), logit_dtype="bfloat16",
                            frame_bytes=4096)
        np.testing.assert_array_equal(read_back(path)[2], t.cpu().double().numpy())


if __name__ == "__main__":
    unittest.main()
