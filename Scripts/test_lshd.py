"""Tests for Scripts/lshd.py:  python3 -m unittest discover -s Scripts -p 'test_*.py'

Reads shards back with the independent reader in Fixtures/reference.py. torch is optional.
"""
import importlib.util
import os
import stat
import struct
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import zstandard

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "Fixtures"))
import lshd  # noqa: E402
import reference  # noqa: E402

HAVE_TORCH = importlib.util.find_spec("torch") is not None


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


class BFloat16Rounding(unittest.TestCase):
    def test_random_float32_bit_patterns(self):
        bits = np.random.default_rng(0).integers(0, 2 ** 32, 200_000, dtype=np.uint64).astype(np.uint32)
        x = bits.view(np.float32)
        finite = np.isfinite(x) & (np.abs(x) < np.float32(3.38e38))  # keep hi from wrapping past inf
        got = lshd.encode_logits(x, "bfloat16")
        np.testing.assert_array_equal(got[finite], bf16_nearest_even(x[finite]))

    def test_ties_nan_overflow(self):
        x = np.array([1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8), np.nan, -np.nan, np.inf, 3.4e38, 1e-45],
                     dtype=np.float32)
        got = lshd.encode_logits(x, "bfloat16")
        self.assertEqual([hex(v) for v in got[:3]], ["0x3f80", "0x3f82", "0xbf80"])  # ties to even
        back = reference.decode_logits(got, "bfloat16")
        self.assertTrue(np.isnan(back[3]) and np.isnan(back[4]))
        self.assertEqual(back[5], np.inf)
        self.assertEqual(back[6], np.inf)  # above bfloat16's largest finite value: rounds to inf
        self.assertEqual(back[7], 0.0)

    def test_float64_rounds_once(self):
        # float64 -> float32 would round this to the tie 1 + 2**-8, and the tie would go down to 1.0.
        v = np.array([1 + 2 ** -8 + 2 ** -30, -(1 + 2 ** -8 + 2 ** -30)])
        self.assertEqual([hex(b) for b in lshd.encode_logits(v, "bfloat16")], ["0x3f81", "0xbf81"])

    @unittest.skipUnless(HAVE_TORCH, "torch not installed")
    def test_matches_torch_for_float32(self):
        import torch
        x = torch.randn(100_000) * 100
        want = x.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
        np.testing.assert_array_equal(lshd.encode_logits(x, "bfloat16"), want)


class Writer(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self._tmp.name)

    def tearDown(self):
        self._tmp.cleanup()

    def test_round_trip_and_frames_at_block_boundaries(self):
        rng = np.random.default_rng(1)
        K = 13
        z = rng.standard_normal((4, 25, K)).astype(np.float32)
        y = rng.integers(0, K, (4, 25))
        y[0, :3] = -100
        path = self.dir / "a.lshd.zst"
        with lshd.LSHDWriter(path, K, logit_dtype="float16", label_dtype="int32", meta={"split": "é"},
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
        (meta_len,) = struct.unpack_from("<I", frames[0], 12)
        block_bytes = 4 + 25 * 4 + 25 * K * 2
        boundaries = {32 + meta_len + i * block_bytes for i in range(5)}  # 4 blocks, then the end marker
        offset = len(frames[0])
        for f in frames[1:]:  # every later frame starts at a block header (or the end marker)
            self.assertIn(offset, boundaries)
            offset += len(f)
        self.assertEqual([p.name for p in self.dir.iterdir()], ["a.lshd.zst"])
        umask = os.umask(0)
        os.umask(umask)
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o666 & ~umask)

    def test_batch_time_vocab_flattening_and_write_shard(self):
        z = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
        y = np.array([[0, 1, 2], [3, -100, 0]])
        lshd.write_shard(self.dir / "b.lshd.zst", z, y, num_rows=6)
        header, got_y, got_z = read_back(self.dir / "b.lshd.zst")
        self.assertEqual(header["num_rows"], 6)
        np.testing.assert_array_equal(got_z, z.reshape(6, 4))
        np.testing.assert_array_equal(got_y, y.reshape(6))

    def test_exception_leaves_nothing(self):
        with self.assertRaises(RuntimeError):
            with lshd.LSHDWriter(self.dir / "c.lshd.zst", 3) as w:
                w.write(np.zeros((2, 3)), np.array([0, 1]))
                raise RuntimeError("model crashed")
        self.assertEqual(list(self.dir.iterdir()), [])

    def test_num_rows_mismatch_leaves_nothing(self):
        with self.assertRaises(ValueError):
            with lshd.LSHDWriter(self.dir / "d.lshd.zst", 3, num_rows=5) as w:
                w.write(np.zeros((2, 3)), np.array([0, 1]))
        self.assertEqual(list(self.dir.iterdir()), [])

    def test_rejected_write_writes_nothing(self):
        with lshd.LSHDWriter(self.dir / "e.lshd.zst", 3, ignore_index=-1) as w:
            with self.assertRaises(ValueError):
                w.write(np.zeros((2, 3)), np.array([0, 3]))  # label == K
            with self.assertRaises(ValueError):
                w.write(np.zeros((2, 4)), np.array([0, 1]))  # wrong K
            w.write(np.zeros((2, 3)), np.array([-1, 2]))
        _, got_y, _ = read_back(self.dir / "e.lshd.zst")
        np.testing.assert_array_equal(got_y, [-1, 2])

    def test_zero_rows(self):
        lshd.LSHDWriter(self.dir / "f.lshd.zst", 2).close()
        payload = frame_payloads((self.dir / "f.lshd.zst").read_bytes())
        self.assertEqual(b"".join(payload)[32:], b"\0\0\0\0")

    @unittest.skipUnless(HAVE_TORCH, "torch not installed")
    def test_torch_bfloat16_tensor_with_grad(self):
        import torch
        lin = torch.nn.Linear(4, 7).to(torch.bfloat16)
        logits = lin(torch.randn(2, 5, 4, dtype=torch.bfloat16))  # [B, T, V], requires grad
        labels = torch.randint(0, 7, (2, 5))
        labels[1, 3:] = -100
        lshd.write_shard(self.dir / "g.lshd.zst", logits, labels, logit_dtype="bfloat16")
        _, got_y, got_z = read_back(self.dir / "g.lshd.zst")
        np.testing.assert_array_equal(got_z, logits.detach().double().reshape(-1, 7).numpy())
        np.testing.assert_array_equal(got_y, labels.reshape(-1).numpy())


if __name__ == "__main__":
    unittest.main()
