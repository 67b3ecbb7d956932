"""ShardedEval: names that never collide, the grouping meta, and shards smoothd reads (with the binary)."""
import json
import os
import subprocess
import sys
import unittest

from support import HAVE_TORCH, ROOT, TempDirCase, skip_without_binary

import numpy as np

import smoothd
from smoothd.eval import shard_name


class Names(unittest.TestCase):
    def test_distinct_across_ranks_checkpoints_and_lookalike_values(self):
        names = set()
        combos = [(m, c, s, r, 4) for m in ("my-lm", "my/lm", "my_lm") for c in ("step-100", "step-250", 100, "100")
                  for s in ("val", "test") for r in range(4)]
        for combo in combos:
            names.add(shard_name(*combo))
        self.assertEqual(len(names), len(combos))
        for name in names:
            self.assertTrue(name.endswith(".lshd.zst") and not name.startswith("."))
            self.assertLessEqual(len(name.encode()), 200)  # smoothd's limit for final names
            self.assertNotIn("/", name)
        self.assertEqual(shard_name("m", "c", "s", 3, 4), shard_name("m", "c", "s", 3, 4))  # a re-run: same name
        long = shard_name("x" * 500, "é" * 300, "s" * 400, 99999, 100000)
        self.assertLessEqual(len(long.encode()), 200)


class Writing(TempDirCase):
    def test_meta_and_validation(self):
        with smoothd.ShardedEval(self.dir, num_classes=5, model="m", checkpoint="step-7", split="val", rank=1,
                                 world_size=3, step=np.int64(7), meta={"dataset": "wiki"}) as shard:
            shard.write(np.zeros((4, 5), np.float32), np.arange(4))
        got = smoothd.read_shard(shard.path)
        self.assertEqual(got.meta, {"model": "m", "checkpoint": "step-7", "split": "val", "step": 7,
                                    "shard_index": 1, "num_shards": 3, "dataset": "wiki"})
        self.assertEqual(got.num_rows, 4)
        self.assertEqual(os.listdir(self.dir), [shard.name])
        for kwargs, kind, message in ((dict(rank=3, world_size=3), ValueError, r"rank must be in \[0, 3\)"),
                                      (dict(world_size=0), ValueError, "world_size must be at least 1"),
                                      (dict(meta={"shard_index": 0}), ValueError, "set by ShardedEval"),
                                      (dict(model=["a"]), TypeError, "model must be a string or a number")):
            args = dict(num_classes=5, model="m", checkpoint="c", split="val")
            args.update(kwargs)
            with self.assertRaisesRegex(kind, message):
                smoothd.ShardedEval(self.dir, **args)
        self.assertEqual(os.listdir(self.dir), [shard.name])

    def test_a_failed_rank_leaves_nothing(self):
        with self.assertRaises(RuntimeError):
            with smoothd.ShardedEval(self.dir, num_classes=3, model="m", checkpoint="c", split="s") as shard:
                shard.write(np.zeros((2, 3)), np.zeros(2, np.int64))
                raise RuntimeError("out of memory")
        self.assertEqual(os.listdir(self.dir), [])

    def test_four_ranks_are_read_by_smoothd(self):
        binary = skip_without_binary(self)
        rng = np.random.default_rng(9)
        for rank in range(4):
            with smoothd.ShardedEval(self.dir, num_classes=50, model="lm", checkpoint="step-500", split="val",
                                     rank=rank, world_size=4, step=500, logit_dtype="bfloat16",
                                     frame_bytes=4096) as shard:
                for _ in range(3):
                    shard.write(rng.standard_normal((2, 10, 50)).astype(np.float32), rng.integers(0, 50, (2, 10)))
        files = sorted(str(p) for p in self.dir.iterdir())
        proc = subprocess.run([binary, "eval", "--json", *files], capture_output=True, text=True, timeout=300)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        report = json.loads(proc.stdout)
        self.assertEqual(report["total"]["shards_ok"], 4)
        self.assertEqual(report["total"]["rows"], 4 * 60)
        self.assertEqual(sorted(e["meta"]["shard_index"] for e in report["shards"]), [0, 1, 2, 3])
        self.assertTrue(all(e["frames"] > 1 for e in report["shards"]))

    @unittest.skipUnless(HAVE_TORCH, "torch not installed")
    def test_torch_eval_loop(self):
        import torch
        model = torch.nn.Sequential(torch.nn.Embedding(30, 16), torch.nn.Linear(16, 30)).to(torch.bfloat16)
        with torch.inference_mode(), smoothd.ShardedEval(self.dir, num_classes=30, model="tiny", checkpoint="c1",
                                                         split="val", logit_dtype="bfloat16") as shard:
            ids = torch.randint(0, 30, (4, 9))
            logits = model(ids)
            shard.write(logits[:, :-1], ids[:, 1:])
        y, z = smoothd.read_shard(shard.path).rows()
        np.testing.assert_array_equal(z, logits[:, :-1].float().reshape(-1, 30).numpy())
        np.testing.assert_array_equal(y, ids[:, 1:].reshape(-1).numpy())


class ReadmeExample(TempDirCase):
    @unittest.skipUnless(HAVE_TORCH, "torch not installed")
    def test_the_eval_loop_in_readme_runs_as_written_and_smoothd_reads_its_shards(self):
        binary = skip_without_binary(self)
        text = (ROOT / "README.md").read_text(encoding="utf-8")
        section = text[text.index("### Writing shards from an eval loop"):]
        code = section[section.index("```python\n") + len("```python\n"):]
        code = code[:code.index("```")]
        for rank in range(2):  # two ranks of one eval set, as torchrun would start them
            env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", PYTHONPATH=str(ROOT / "python"))
            proc = subprocess.run([sys.executable, "-c", code], cwd=self.dir, env=env, capture_output=True,
                                  text=True, timeout=600)
            self.assertEqual(proc.returncode, 0, proc.stderr)
        files = sorted(str(p) for p in (self.dir / "spool").iterdir())
        self.assertEqual(len(files), 2)
        proc = subprocess.run([binary, "eval", "--json", *files], capture_output=True, text=True, timeout=300)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        report = json.loads(proc.stdout)
        self.assertEqual(report["total"]["rows"], 64 * 128)
        self.assertEqual(sorted(e["meta"]["shard_index"] for e in report["shards"]), [0, 1])
        self.assertEqual({e["logit_dtype"] for e in report["shards"]}, {"bfloat16"})


if __name__ == "__main__":
    unittest.main()
