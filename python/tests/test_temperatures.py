"""smoothd.results and state_version 2 (issue 14): the temperature sweep and the confidence histogram merge
exactly, and merge() gives smoothd's own adaptive_ece, by_temperature and best_temperature bit for bit, for any
partition of the shards; states of another sweep are refused. States come from the smoothd binary's eval --json."""
import json
import subprocess
import unittest
import warnings

from support import FIXTURES, smoothd_binary

from smoothd import results

FILES = [str(FIXTURES / "stats" / f) for f in ("ckpt_a_0.lshd.zst", "ckpt_a_1.lshd.zst", "ckpt_a_2.lshd.zst",
                                                   "temp_k10.lshd.zst", "confident.lshd.zst")]
TEMPERATURES = [0.5, 0.75, 1.0, 1.5, 2.0, 3.0]


class SweepMerges(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.binary, why = smoothd_binary()
        if cls.binary is None or not (FIXTURES / "stats").exists():
            raise unittest.SkipTest(why or "no Fixtures/stats")

    def eval_json(self, files, *flags):
        proc = subprocess.run([self.binary, "eval", "--json", *flags] + files, capture_output=True, text=True, timeout=600)
        self.assertIn(proc.returncode, (0, 1), proc.stderr)
        return json.loads(proc.stdout)

    def test_merge_reproduces_the_sweep_and_adaptive_ece(self):
        flags = ["--smoothing-mode", "others", "--temperatures", ",".join(map(repr, TEMPERATURES))]
        whole = self.eval_json(FILES, *flags)
        parts = [self.eval_json(FILES[:2], *flags), self.eval_json(FILES[2:], *flags)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", results.ResultsWarning)
            doc = results.merge(parts[0]["shards"] + parts[1]["shards"], smoothing_mode="others", temperatures=TEMPERATURES)
        self.assertEqual(results.dumps(doc["total"]), results.dumps(whole["total"]))
        self.assertEqual([results.dumps(g) for g in doc["groups"]], [results.dumps(g) for g in whole["groups"]])
        self.assertEqual(list(doc["total"]["by_temperature"]), ["0.5", "0.75", "1.0", "1.5", "2.0", "3.0"])
        self.assertIsNotNone(doc["total"]["adaptive_ece"])
        with self.assertRaisesRegex(results.ResultsError, "temperatures"):
            results.merge(parts[0]["shards"], smoothing_mode="others")

    def test_version_one_states_merge_without_adaptive_ece(self):
        doc = self.eval_json(FILES[:1])
        state = doc["shards"][0]["state"]
        old = {k: v for k, v in state.items() if k not in ("state_version", "temperatures", "confidence_histogram")}
        merged = results.State.from_json(state, "new")
        merged.merge(results.State.from_json(old, "old"))
        self.assertIsNone(merged.histogram)
        self.assertIsNone(results.State.from_json(old, "old").metric_fields(results._Options(0.1, "uniform", (), 5, 15))["adaptive_ece"])
