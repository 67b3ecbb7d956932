"""read_shard: valid fixtures read back as the NumPy reference reads them; invalid ones fail as smoothd does.

Fixtures/expected.json states each invalid fixture's kind and offset (zstd errors have none there); with a
smoothd binary, every invalid fixture must also give exactly the kind and offset that `smoothd eval` gives.
"""
import json
import struct
import subprocess
import unittest

from support import FIXTURES, TempDirCase, skip_without_binary

import numpy as np
import zstandard

import reference
import smoothd

EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))


def reference_rows(path, K):
    it = reference.read_shard(path)
    next(it)
    chunks = list(it)
    if not chunks:
        return np.zeros(0, np.int64), np.zeros((0, K))
    return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])


def shard_bytes(K=4, rows=3, meta=b"", logits=None):
    z = np.arange(rows * K, dtype="<f4").reshape(rows, K) if logits is None else logits
    return (struct.pack("<4sHBBIIqQ", b"LSHD", 1, 1, 2, K, len(meta), -100, 0) + meta
            + struct.pack("<I", rows) + np.zeros(rows, "<i8").tobytes() + z.tobytes() + struct.pack("<I", 0))


class ValidFixtures(unittest.TestCase):
    def test_every_valid_fixture_reads_back_the_reference_rows(self):
        for entry in EXPECTED["valid"]:
            with self.subTest(entry["file"]):
                path = FIXTURES / entry["file"]
                shard = smoothd.read_shard(path)
                for key in ("num_classes", "logit_dtype", "label_dtype", "ignore_index", "meta"):
                    self.assertEqual(getattr(shard, key), entry[key], key)
                self.assertEqual(shard.num_rows, entry["rows"])
                want_y, want_z = reference_rows(path, shard.num_classes)
                got = list(shard.blocks())
                for y, z in got:
                    self.assertEqual((y.dtype, z.dtype), (np.int64, np.float32))
                    self.assertEqual(z.shape, (len(y), shard.num_classes))
                got_y = np.concatenate([y for y, _ in got]) if got else np.zeros(0, np.int64)
                got_z = np.concatenate([z for _, z in got]) if got else np.zeros((0, shard.num_classes))
                np.testing.assert_array_equal(got_y, want_y)
                np.testing.assert_array_equal(got_z.astype(np.float64), want_z)  # half precision widened exactly

    def test_large_blocks_come_in_pieces(self):
        shard = smoothd.read_shard(FIXTURES / "valid/num_rows_stated.lshd.zst")  # one block of 3000 rows
        sizes = [len(y) for y, _ in shard.blocks(max_rows=700)]
        self.assertEqual(sizes, [700, 700, 700, 700, 200])


class InvalidFixtures(unittest.TestCase):
    def test_every_invalid_fixture_gives_its_kind_and_offset(self):
        for entry in EXPECTED["invalid"]:
            with self.subTest(entry["file"]):
                with self.assertRaises(smoothd.ShardError) as caught:
                    smoothd.read_shard(FIXTURES / entry["file"]).rows()
                err = caught.exception
                self.assertEqual(err.kind, entry["kind"], err)
                if entry["offset"] is not None:
                    self.assertEqual(err.offset, entry["offset"], err)
                else:
                    self.assertIsNotNone(err.offset)
                self.assertTrue(err.reason)
                self.assertIn(str(FIXTURES / entry["file"]), str(err))
                if err.kind == "zstd_error":
                    self.assertTrue(err.reason.startswith("zstd: "), err.reason)

    def test_same_kind_and_offset_as_smoothd(self):
        binary = skip_without_binary(self)
        files = [str(FIXTURES / e["file"]) for e in EXPECTED["invalid"]]
        proc = subprocess.run([binary, "eval", "--json", *files], capture_output=True, text=True, timeout=300)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        report = json.loads(proc.stdout)
        by_path = {e["shard"]: e for e in report["shards"]}
        for path in files:
            with self.subTest(path):
                swift = by_path[path]["error"]
                with self.assertRaises(smoothd.ShardError) as caught:
                    smoothd.read_shard(path).rows()
                self.assertEqual((caught.exception.kind, caught.exception.offset), (swift["kind"], swift["offset"]),
                                 f"python: {caught.exception.reason!r}; smoothd: {swift['reason']!r}")


class Strictness(TempDirCase):
    def put(self, name, data):
        path = self.dir / name
        path.write_bytes(data)
        return path

    def error(self, path):
        with self.assertRaises(smoothd.ShardError) as caught:
            smoothd.read_shard(path).rows()
        return caught.exception

    def test_meta_that_python_accepts_but_smoothd_refuses(self):
        for meta in (b'{"x": "\\ud800"}', b'{"x": NaN}', b'{"x": Infinity}', b"[" * 300 + b"]" * 300,
                     b'{"a":' * 257 + b"1" + b"}" * 257, b'{"a": 1} x', b"\xef\xbb\xbf{}"):
            with self.subTest(meta[:20]):
                err = self.error(self.put("m.lshd.zst", zstandard.ZstdCompressor().compress(shard_bytes(meta=meta))))
                self.assertEqual((err.kind, err.offset), ("meta_not_json_object", 32))
        ok = self.put("ok.lshd.zst", zstandard.ZstdCompressor().compress(shard_bytes(meta=b'{"x": "\\ud83d\\ude42"}')))
        self.assertEqual(smoothd.read_shard(ok).meta, {"x": "🙂"})

    def test_windows_over_8_mib_are_refused(self):
        payload = shard_bytes(K=1000, rows=2400, logits=np.zeros((2400, 1000), "<f4"))  # 9.6 MB
        params = zstandard.ZstdCompressionParameters.from_level(3, window_log=24)
        big = self.put("w.lshd.zst", zstandard.ZstdCompressor(compression_params=params).compress(payload))
        self.assertGreater(zstandard.get_frame_parameters(big.read_bytes()[:18]).window_size, 8 << 20)
        err = self.error(big)
        self.assertEqual(err.kind, "zstd_error")
        self.assertEqual(err.reason, "zstd: Frame requires too much memory for decoding")

    def test_end_marker_errors_in_smoothds_order(self):
        # num_rows is checked at the end marker, so it wins over bytes after it.
        payload = bytearray(shard_bytes())
        struct.pack_into("<Q", payload, 24, 5)
        cctx = zstandard.ZstdCompressor()
        err = self.error(self.put("n.lshd.zst", cctx.compress(bytes(payload) + b"xx")))
        self.assertEqual((err.kind, err.offset), ("num_rows_mismatch", len(payload) - 4))
        # The stream ending inside a frame whose payload is complete is still truncated.
        frame = zstandard.ZstdCompressor(write_checksum=True).compress(shard_bytes())
        err = self.error(self.put("c.lshd.zst", frame[:-2]))
        self.assertEqual((err.kind, err.offset), ("truncated", len(shard_bytes())))

    def test_empty_and_skippable_frames_after_the_end_marker_are_fine(self):
        cctx = zstandard.ZstdCompressor()
        data = cctx.compress(shard_bytes()) + cctx.compress(b"") + struct.pack("<II", 0x184D2A5F, 2) + b"hi"
        y, z = smoothd.read_shard(self.put("s.lshd.zst", data)).rows()
        self.assertEqual(z.shape, (3, 4))

    def test_missing_file_is_an_io_error(self):
        with self.assertRaises(smoothd.ShardError) as caught:
            smoothd.read_shard(self.dir / "nope.lshd.zst")
        self.assertEqual((caught.exception.kind, caught.exception.offset), ("io_error", None))

    def test_num_rows_counts_when_not_stated(self):
        path = self.dir / "c.lshd.zst"
        with smoothd.LSHDWriter(path, 5, frame_bytes=200) as w:
            for n in (3, 9, 1):
                w.write(np.zeros((n, 5)), np.zeros(n, np.int64))
        self.assertEqual(smoothd.read_shard(path).num_rows, 13)

    def test_a_zstd_bomb_is_decoded_a_block_at_a_time(self):
        # 64 MiB of zero logits compress to a few KB of RLE blocks; each decoder call yields one block.
        payload = shard_bytes(K=4096, rows=4096, logits=np.zeros((4096, 4096), "<f4"))
        path = self.put("bomb.lshd.zst", zstandard.ZstdCompressor(level=1).compress(payload))
        self.assertLess(path.stat().st_size, 1 << 16)
        largest = 0
        shard = smoothd.read_shard(path)
        real = zstandard.ZstdDecompressor.decompressobj

        def spy(dctx, *a, **kw):
            dobj = real(dctx, *a, **kw)

            class Spy:
                def decompress(self, data):
                    nonlocal largest
                    out = dobj.decompress(data)
                    largest = max(largest, len(out))
                    return out

                def __getattr__(self, name):
                    return getattr(dobj, name)

            return Spy()

        zstandard.ZstdDecompressor.decompressobj = spy
        try:
            rows = sum(len(y) for y, _ in shard.blocks(max_rows=256))
        finally:
            zstandard.ZstdDecompressor.decompressobj = real
        self.assertEqual(rows, 4096)
        self.assertGreater(largest, 0)  # the spy saw the calls
        self.assertLessEqual(largest, 128 << 10)


if __name__ == "__main__":
    unittest.main()
