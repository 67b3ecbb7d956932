"""smoothd.results: loading every kind of result, and merges bit-identical to one `smoothd eval`.

The per-shard states come from the smoothd binary itself (`serve --exit-when-idle` over copies of the
fixtures writes a summary with the exact state per shard); the expected numbers come from one
`smoothd eval --json` over the same shards. Merging must reproduce them bit for bit, for any order and
partition of the inputs, in both smoothing modes. Tests without the binary use hand-made states.
"""
import json
import math
import os
import random
import shutil
import subprocess
import tempfile
import unittest
import warnings
from fractions import Fraction

from support import FIXTURES, TempDirCase, smoothd_binary

from smoothd import results

VALID = sorted(str(p) for p in (FIXTURES / "valid").glob("*.lshd.zst"))
METRIC_KEYS = ("rows", "counted_rows", "ignored_rows", "nonfinite_rows", "loss", "nll", "perplexity", "accuracy",
               "top_k_accuracy", "mean_confidence", "entropy", "brier", "ece", "losses_by_smoothing")
OPTION_SETS = [dict(mode="uniform", report=()), dict(mode="others", report=(0.0, 0.3)),
               dict(mode="uniform", report=(0.3, 1.0, 0.1), smoothing=0.25)]


def eval_json(binary, files, mode="uniform", report=(), smoothing=0.1):
    cmd = [binary, "eval", "--json", "--smoothing", repr(smoothing), "--smoothing-mode", mode]
    if report:
        cmd += ["--report-smoothing", ",".join(repr(float(e)) for e in report)]
    proc = subprocess.run(cmd + list(files), capture_output=True, text=True, timeout=600)
    if proc.returncode not in (0, 1):
        raise AssertionError(f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stderr}")
    return json.loads(proc.stdout), proc.stdout


def number_texts(text):
    """Every number literal in a JSON text, in order (compares formatting, not just values)."""
    import re
    return re.findall(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", text)


class WithSummaries(unittest.TestCase):
    """Runs the daemon once over all valid fixtures (and one invalid) to get their summaries."""

    @classmethod
    def setUpClass(cls):
        cls.binary, why = smoothd_binary()
        if cls.binary is None:
            print(f"\nskipped {cls.__name__}: {why}")
            raise unittest.SkipTest(why)
        cls.tmp = tempfile.mkdtemp(prefix="smoothd-results-")
        spool, cls.out = os.path.join(cls.tmp, "spool"), os.path.join(cls.tmp, "out")
        os.makedirs(spool)
        for path in VALID + [str(FIXTURES / "invalid/label_out_of_range_eq_k.lshd.zst")]:
            shutil.copy(path, os.path.join(spool, os.path.basename(path)))
        proc = subprocess.run([cls.binary, "serve", "--spool", spool, "--output", cls.out, "--exit-when-idle",
                               "--metrics-listen", "none"], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise AssertionError(f"smoothd serve failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        cls.directory = results.load(cls.out)
        cls.summaries = {r["shard"]: r for r in cls.directory.shards if r["ok"]}

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "tmp", None):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def records_for(self, files):
        return [self.summaries[os.path.basename(f)] for f in files]

    def assert_same_fields(self, got, want, where):
        """Every count and metric equal, bit for bit (repr tells -0.0 and 0.0 apart), and printed alike."""
        for key in METRIC_KEYS:
            self.assertIn(key, want, f"{where}: smoothd has no {key}")
            self.assertEqual(repr(got[key]), repr(want[key]), f"{where}: {key}")
        self.assertEqual(results.dumps({k: got[k] for k in METRIC_KEYS}),
                         results.dumps({k: want[k] for k in METRIC_KEYS}), where)


class MergeEqualsOneEval(WithSummaries):
    def test_total_bit_identical_for_orders_and_partitions(self):
        rng = random.Random(12)
        for opts in OPTION_SETS:
            smoothing = opts.get("smoothing", 0.1)
            report, text = eval_json(self.binary, VALID, opts["mode"], opts["report"], smoothing)
            want = report["total"]
            records = self.records_for(VALID)
            for parts in (1, 2, 3, 7):
                shuffled = records[:]
                rng.shuffle(shuffled)
                groups = [shuffled[i::parts] for i in range(parts)]
                inputs = [results.Results(f"part-{i}", "records", g) for i, g in enumerate(groups)]
                doc = results.merge(inputs, smoothing=smoothing, smoothing_mode=opts["mode"],
                                    report_smoothing=opts["report"], group_by=None)
                where = f"{opts} in {parts} parts"
                self.assert_same_fields(doc["total"], want, where)
                for key in ("shards_ok", "smoothing", "smoothing_mode", "top_k", "ece_bins"):
                    self.assertEqual(doc["total"][key], want[key], f"{where}: {key}")
                self.assertEqual(len(doc["groups"]), 1)
                self.assertEqual(doc["groups"][0]["key"], {})
                self.assert_same_fields(doc["groups"][0], want, where + " (the one group)")
            # The printed numbers of smoothd's own total match results.dumps of it.
            swift_total = text[text.index('"total"'):]
            self.assertEqual(number_texts(swift_total)[:8], number_texts(results.dumps(want))[:8])

    def test_subsets(self):
        rng = random.Random(5)
        for size in (1, 2, 5):
            files = rng.sample(VALID, size)
            report, _ = eval_json(self.binary, files, "others", (0.0,))
            doc = results.merge(self.records_for(files), smoothing_mode="others", report_smoothing=(0.0,), group_by=())
            self.assert_same_fields(doc["total"], report["total"], f"subset {files}")

    def test_a_group_of_one_shard_equals_that_shards_entry(self):
        report, _ = eval_json(self.binary, VALID, "uniform", (0.0, 0.3))
        entries = {os.path.basename(e["shard"]): e for e in report["shards"]}
        doc = results.merge(self.directory, report_smoothing=(0.0, 0.3))  # default group_by
        single = [g for g in doc["groups"] if g["shards"] == 1]
        self.assertGreaterEqual(len(single), 3)
        for group in single:
            name = next(n for n, r in self.summaries.items() if _key(r) == group["key"])
            self.assert_same_fields(group, entries[name], f"group {group['key']}")
        for name in self.summaries:  # and every shard merged alone
            alone = results.merge([self.summaries[name]], report_smoothing=(0.0, 0.3), group_by=None)
            self.assert_same_fields(alone["total"], entries[name], name)

    def test_states_read_back_to_smoothds_own_encoding(self):
        for name, summary in self.summaries.items():
            again = results.State.from_json(summary["state"], name).to_json()
            self.assertEqual(json.dumps(again), json.dumps(summary["state"]), name)  # same keys, order, digits

    def test_directory_load_and_default_groups(self):
        self.assertEqual(self.directory.kind, "directory")
        self.assertEqual(len(self.directory.shards), len(VALID) + 1)
        self.assertEqual(self.directory.total["shards_ok"], len(VALID))
        doc = results.merge(self.directory)
        self.assertEqual(doc["inputs"], [{"path": self.out, "kind": "directory", "shards_ok": len(VALID),
                                          "shards_failed": 1, "errors": []}])
        self.assertEqual(doc["total"]["shards_failed"], 1)
        keys = [g["key"] for g in doc["groups"]]
        self.assertEqual(keys[0], {"model": None, "checkpoint": None, "split": None})  # nulls first
        self.assertEqual(keys, sorted(keys, key=lambda k: [(v is not None, v or "") for v in k.values()]))
        self.assertEqual(sum(g["shards"] for g in doc["groups"]), len(VALID))
        # The daemon's totals.json equals the merge of its summaries.
        self.assert_same_fields(doc["total"], self.directory.total, "totals.json")

    def test_states_in_eval_json_when_smoothd_writes_them(self):
        report, _ = eval_json(self.binary, VALID)
        if "state" not in report["shards"][0]:
            self.skipTest("this smoothd's eval --json has no per-shard state yet")
        doc = results.merge([e for e in report["shards"] if e["ok"]], group_by=None)
        self.assert_same_fields(doc["total"], report["total"], "eval --json states")


class RunFixtures(unittest.TestCase):
    """Fixtures/runs: groups, their order, completeness, supersession and failures as its independent
    NumPy reference (Fixtures/runs_reference.py) expects, from the binary's per-shard states."""

    @classmethod
    def setUpClass(cls):
        cls.binary, why = smoothd_binary()
        expected = FIXTURES / "runs" / "expected.json"
        if cls.binary is None or not expected.exists():
            why = why or "no Fixtures/runs"
            print(f"\nskipped {cls.__name__}: {why}")
            raise unittest.SkipTest(why)
        cls.expected = json.loads(expected.read_text(encoding="utf-8"))
        cls.tmp = tempfile.mkdtemp(prefix="smoothd-runs-")
        # Files with one base name (a re-run by name) go to a second spool, so that both are recorded.
        spools, where = [], {}
        for entry in cls.expected["files"]:
            name = os.path.basename(entry["file"])
            i = next(i for i in range(len(spools) + 1) if i == len(spools) or name not in spools[i])
            if i == len(spools):
                spools.append(set())
            spools[i].add(name)
            where[entry["file"]] = (i, name)
        outs = []
        for i in range(len(spools)):
            spool, out = os.path.join(cls.tmp, f"spool{i}"), os.path.join(cls.tmp, f"out{i}")
            os.makedirs(spool)
            for file, (j, name) in where.items():
                if j == i:
                    shutil.copy(FIXTURES / file, os.path.join(spool, name))
            # --group-by none: serve then rejects no shard for a group key, so every group-by can be merged here.
            proc = subprocess.run([cls.binary, "serve", "--spool", spool, "--output", out, "--exit-when-idle",
                                   "--metrics-listen", "none", "--group-by", "none"], capture_output=True, text=True,
                                  timeout=600)
            if proc.returncode != 0:
                raise AssertionError(f"smoothd serve failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
            # serve keeps the records its re-runs superseded in OUTPUT/superseded/; this test wants every record.
            superseded = os.path.join(out, "superseded")
            older = [results.load(os.path.join(superseded, n)).shards[0] for n in sorted(os.listdir(superseded))
                     if n.endswith(".summary.json")] if os.path.isdir(superseded) else []
            outs.append({r["shard"]: r for r in older + results.load(out).shards})
        # In the fixture's order, without processed_at: the order decides which re-run is newer.
        cls.records = []
        for entry in cls.expected["files"]:
            i, name = where[entry["file"]]
            rec = dict(outs[i][name])
            rec.pop("processed_at", None)
            rec["shard"] = entry["file"]
            cls.records.append(rec)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def assert_metrics(self, got, want, mode, where):
        for key in ("rows", "counted_rows", "ignored_rows", "nonfinite_rows"):
            self.assertEqual(got[key], want[key], f"{where}: {key}")
        pairs = [(got[k], want[k]) for k in ("nll", "perplexity", "accuracy", "mean_confidence", "entropy", "brier")]
        pairs += [(got["top_k_accuracy"], want["top_k_accuracy"]["5"]), (got["loss"], want["loss"][mode]["0.1"]),
                  (got["losses_by_smoothing"]["0.1"], want["loss"][mode]["0.1"]),
                  (got["losses_by_smoothing"]["0.0"], want["loss"][mode]["0.0"])]
        for g, w in pairs:
            self.assertTrue(math.isclose(g, w, rel_tol=1e-6), f"{where}: {g} vs {w}")
        self.assertLessEqual(abs(got["ece"] - want["ece"]["15"]), 1e-4, where)

    def test_groups_completeness_supersession_and_failures(self):
        for spec, result in self.expected["group_by"].items():
            for mode in ("uniform", "others"):
                where = f"--group-by {spec}, {mode}"
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    doc = results.merge(self.records, smoothing_mode=mode, report_smoothing=(0.0,),
                                        group_by=result["group_by"] or None)
                self.assertEqual([g["key"] for g in doc["groups"]], [g["key"] for g in result["groups"]], where)
                for got, want in zip(doc["groups"], result["groups"]):
                    self.assertEqual(got["shards"], want["shards"], f"{where} {want['key']}")
                    self.assertEqual(got.get("completeness"), want.get("completeness"), f"{where} {want['key']}")
                    self.assert_metrics(got, want, mode, f"{where} {want['key']}")
                self.assertEqual(doc["total"]["shards_ok"], result["total"]["shards_ok"], where)
                self.assertEqual(doc["total"]["shards_failed"], result["total"]["shards_failed"], where)
                self.assert_metrics(doc["total"], result["total"], mode, f"{where} total")
                messages = [str(w.message) for w in caught]
                self.assertEqual(sum("supersedes" in m for m in messages), len(result["superseded"]), where)
                for s in result["superseded"]:
                    self.assertTrue(any(s["by"] in m and s["superseded"] in m for m in messages), s)
                for e in result["errors"]:
                    # serve records a shard breaking a rule of every group-by (bad_shard_index) as an error record
                    # of that kind; the others are summaries that merge() finds wrong under this group-by.
                    record = next(r for r in self.records if r["shard"] == e["file"])
                    if record["ok"]:
                        self.assertTrue(any(e["file"] in m and e["kind"] in m for m in messages), e)
                    else:
                        self.assertEqual(record["error"]["kind"], e["kind"], e)

    def test_eval_groups_equal_the_merge_of_its_own_states(self):
        """smoothd eval --json over the run fixtures: its groups and total are, bit for bit, merge() of its entries."""
        files = [e["file"] for e in self.expected["files"]]
        for spec, result in self.expected["group_by"].items():
            for mode in ("uniform", "pytorch", "others"):
                where = f"--group-by {spec}, {mode}"
                proc = subprocess.run([self.binary, "eval", "--json", "--smoothing-mode", mode, "--report-smoothing", "0",
                                       "--group-by", spec] + files, cwd=FIXTURES, capture_output=True, text=True, timeout=600)
                self.assertEqual(proc.returncode, 1, f"{where}: {proc.stderr[-2000:]}")
                report = json.loads(proc.stdout)
                self.assertIn("state", next(e for e in report["shards"] if e["ok"]), where)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", results.ResultsWarning)
                    doc = results.merge(report["shards"], smoothing_mode=mode, report_smoothing=(0.0,),
                                        group_by=result["group_by"] or None)
                # States included: eval writes each group's and the total's merged state, merge() computes its own.
                self.assertIn("state", report["total"], where)
                self.assertEqual(results.dumps(doc["groups"]), results.dumps(report["groups"]), where)
                self.assertEqual(results.dumps(doc["total"]), results.dumps(report["total"]), where)


def _key(record):
    meta = record.get("meta") or {}
    return {k: meta.get(k) for k in results.DEFAULT_GROUP_BY}


# ------------------------------------------------------------------------------------------------
# Without the binary: hand-made states and files
# ------------------------------------------------------------------------------------------------
def state(rows=10, counted=8, ignored=2, nonfinite=0, correct=5, hits=7, bins=15, fixed=(0, 0, 0, 0, 0, 0), wide=None):
    sums = {}
    for name, f in zip(("nll_sum", "uniform_sum", "others_sum", "entropy_sum", "confidence_sum", "brier_sum"), fixed):
        sums[name] = {"fixed": str(f), "wide": wide or []}
    per_bin = [counted // bins] * bins
    per_bin[-1] += counted - sum(per_bin)
    good = [min(c, correct - sum(per_bin[:i]) if i else correct) for i, c in enumerate(per_bin)]
    good = [max(0, g) for g in good]
    good[-1] += correct - sum(good)
    # Consistent as docs/STATE-FORMAT.md defines it: confidence 0.5 per occupied bin, confidence_sum their sum.
    bin_confidence = [{"fixed": str(1 << 79) if n else "0", "wide": []} for n in per_bin]
    sums["confidence_sum"] = {"fixed": str(sum(1 << 79 for n in per_bin if n)), "wide": []}
    return {"top_k": 5, "ece_bins": bins, "rows": rows, "counted_rows": counted, "ignored_rows": ignored,
            "nonfinite_rows": nonfinite, "correct": correct, "top_k_hits": hits, **sums,
            "bin_counts": per_bin, "bin_correct": good, "bin_confidence": bin_confidence}


def record(name, st, meta=None, **extra):
    return {"shard": name, "ok": True, "meta": meta, "state": st, **extra}


class ExactSums(unittest.TestCase):
    def test_value_is_within_half_an_ulp_or_so_of_the_exact_sum(self):
        rng = random.Random(3)
        for _ in range(2000):
            fixed = rng.randrange(-(1 << 126), 1 << 126) >> rng.randrange(0, 120)
            digits = [[rng.randrange(0, 72), rng.randrange(0, 1 << 32)] for _ in range(rng.randrange(0, 3))]
            # Keep the wide part finite, and written normalized as smoothd writes it (one non-zero digit per index, ascending).
            digits = sorted({i: d for i, d in digits if i < 40 and d}.items())
            digits = [[i, d] for i, d in digits]
            s = results.ExactSum.from_json({"fixed": str(fixed), "wide": digits}, "t", "x")
            exact = Fraction(fixed, 1 << 80) + sum(Fraction(d) * Fraction(2) ** (32 * i - 1074) for i, d in digits)
            got = s.value
            if exact == 0:
                self.assertEqual(got, 0.0)
                continue
            ulp = math.ulp(float(exact))
            self.assertLessEqual(abs(Fraction(got) - exact), Fraction(ulp), (fixed, digits))

    def test_merge_spills_like_smoothd_and_keeps_the_value_exact(self):
        big = (1 << 127) - 5
        a = results.ExactSum(big)
        a.add(results.ExactSum(10))  # Int128 overflow: the old fixed part moves to the wide sum
        self.assertEqual(a.fixed, 10)
        self.assertEqual(a.wide, big << (1074 - 80))
        self.assertEqual(Fraction(a.wide, 1 << 1074) + Fraction(a.fixed, 1 << 80), Fraction(big + 10, 1 << 80))
        js = a.to_json()
        back = results.ExactSum.from_json(js, "t", "x")
        self.assertEqual((back.fixed, back.wide), (a.fixed, a.wide))
        neg = results.ExactSum(-3, -(1 << 1100))
        self.assertEqual(results.ExactSum.from_json(neg.to_json(), "t", "x").wide, -(1 << 1100))
        self.assertLess(neg.value, 0)


class Merging(unittest.TestCase):
    def test_identity_seen_twice_counts_the_newest_once(self):
        a = record("dir1/val.lshd.zst", state(), processed_at="2026-12-01T10:00:00Z")
        b = record("dir2/val.lshd.zst", state(rows=20, ignored=12), processed_at="2026-12-01T11:00:00Z")
        for order in ([a, b], [b, a]):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                doc = results.merge(order, group_by=None)
            self.assertEqual(doc["total"]["shards_ok"], 1)
            self.assertEqual(doc["total"]["rows"], 20)
            self.assertEqual(len(caught), 1)
            self.assertIn("same shard", str(caught[0].message))
        # shard_index identity: two names, one (group, index)
        meta = {"model": "m", "checkpoint": "c", "split": "val", "shard_index": 1, "num_shards": 2}
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            doc = results.merge([record("x.lshd.zst", state(), meta), record("y.lshd.zst", state(), meta)])
        self.assertEqual(doc["total"]["shards_ok"], 1)
        self.assertEqual(doc["groups"][0]["completeness"], {"expected": 2, "present": 1, "missing": [0]})

    def test_completeness_and_group_order(self):
        recs = []
        for ckpt in (500, 100, None):
            for i in (0, 2):
                meta = {"model": "m", "split": "val", "shard_index": i, "num_shards": 3}
                if ckpt is not None:
                    meta["checkpoint"] = ckpt
                recs.append(record(f"{ckpt}-{i}.lshd.zst", state(), meta))
        doc = results.merge(recs)
        self.assertEqual([g["key"]["checkpoint"] for g in doc["groups"]], [None, 100, 500])
        for g in doc["groups"]:
            self.assertEqual(list(g)[:3], ["key", "shards", "completeness"])
            self.assertEqual(g["completeness"], {"expected": 3, "present": 2, "missing": [1]})
            self.assertEqual(g["shards"], 2)
            self.assertEqual(g["rows"], 20)

    def test_refusals_name_the_file(self):
        good = state()
        cases = [
            (dict(good, state_version=7), "unknown state_version 7"),
            (dict(good, rows=11), "state counts do not add up: rows 11 != counted 8"),
            (dict(good, top_k=10), "state computed with top-k 10 and 15 ECE bins; this merge uses top-k 5"),
            (dict(good, nll_sum={"fixed": "12x", "wide": []}), "bad exact sum nll_sum"),
            ({k: v for k, v in good.items() if k != "brier_sum"}, "missing brier_sum"),
            (dict(good, confidence_sum={"fixed": "1", "wide": []}), "confidence_sum is not the sum of bin_confidence"),
            (dict(good, nll_sum={"fixed": "0", "wide": [[3, 1 << 32]]}), "not normalized"),
            (dict(state(rows=2, counted=0, ignored=2, correct=0, hits=0), nll_sum={"fixed": "5", "wide": []}),
             "no row is counted but a sum is not 0"),
        ]
        for st, message in cases:
            with self.subTest(message):
                with self.assertRaises(results.ResultsError) as caught:
                    results.merge([record("bad.lshd.zst", st)])
                self.assertIn(message, str(caught.exception))
                self.assertIn("bad.lshd.zst", str(caught.exception))
        with self.assertRaisesRegex(results.ResultsError, "no exact \"state\""):
            results.merge([{"shard": "old.lshd.zst", "ok": True, "meta": None}])

    def test_options(self):
        with self.assertRaisesRegex(ValueError, "smoothing 1.5 is outside"):
            results.merge([], smoothing=1.5)
        with self.assertRaisesRegex(ValueError, "smoothing_mode must be one of"):
            results.merge([], smoothing_mode="label")
        doc = results.merge([], smoothing_mode="fairseq", report_smoothing=(0.0, 0.1))
        self.assertEqual(doc["total"]["smoothing_mode"], "others")
        self.assertEqual(doc["total"]["losses_by_smoothing"], {"0.1": None, "0.0": None})
        self.assertIsNone(doc["total"]["loss"])

    def test_unusable_shards_count_as_failed_with_a_warning(self):
        cases = [({"split": ["a"]}, "group_key_not_scalar: meta['split'] is an array"),
                 ({"model": {"x": 1}}, "group_key_not_scalar: meta['model'] is an object"),
                 ({"shard_index": 3, "num_shards": 3}, "bad_shard_index: meta shard_index 3 is not below num_shards 3"),
                 ({"shard_index": True}, "bad_shard_index: meta shard_index true is not an integer >= 0"),
                 ({"num_shards": 0}, "bad_shard_index: meta num_shards 0 is not an integer >= 1")]
        for meta, message in cases:
            with self.subTest(meta), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                doc = results.merge([record("a.lshd.zst", state(), meta), record("b.lshd.zst", state())])
                self.assertEqual((doc["total"]["shards_ok"], doc["total"]["shards_failed"]), (1, 1))
                self.assertEqual(len(caught), 1)
                self.assertIn(message, str(caught[0].message))
        # Not a group-by key: fine.
        doc = results.merge([record("a.lshd.zst", state(), {"split": ["a"]})], group_by=("model",))
        self.assertEqual(doc["total"]["shards_ok"], 1)

    def test_equal_values_are_one_group_and_integral_floats_are_indexes(self):
        a = record("a.lshd.zst", state(), {"checkpoint": 1, "shard_index": 0, "num_shards": 2.0})
        b = record("b.lshd.zst", state(), {"checkpoint": 1.0, "shard_index": 1.0, "num_shards": 2})
        c = record("c.lshd.zst", state(), {"checkpoint": True})
        doc = results.merge([a, b, c], group_by=("checkpoint",))
        self.assertEqual([g["key"] for g in doc["groups"]], [{"checkpoint": True}, {"checkpoint": 1}])
        self.assertEqual(doc["groups"][1]["completeness"], {"expected": 2, "present": 2, "missing": []})


class Loading(TempDirCase):
    def put(self, name, value):
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value if isinstance(value, str) else json.dumps(value))
        return path

    def test_every_kind(self):
        rec = record("a.lshd.zst", state())
        ev = self.put("eval.json", {"shards": [rec, {"shard": "b", "ok": False, "error": {}}], "total": {"shards_ok": 1}})
        self.assertEqual((results.load(ev).kind, len(results.load(ev))), ("eval", 2))
        self.assertEqual(results.load(self.put("out/a.lshd.zst.summary.json", rec)).kind, "summary")
        self.assertEqual(results.load(self.put("out/b.error.json", {"shard": "b", "ok": False})).kind, "error")
        tot = results.load(self.put("out/totals.json", {"shards_ok": 1, "shards_failed": 1}))
        self.assertEqual(tot.kind, "totals")
        self.put("out/superseded/a.lshd.zst.summary.json", rec)
        d = results.load(self.dir / "out")
        self.assertEqual((d.kind, len(d.shards), d.total["shards_ok"]), ("directory", 2, 1))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            doc = results.merge([ev, self.dir / "out"])
        self.assertEqual(doc["total"]["shards_ok"], 1)  # a.lshd.zst twice: one identity
        self.assertIn("a.lshd.zst.summary.json supersedes", str(caught[0].message))
        merged = self.put("merged.json", results.dumps(doc))
        self.assertEqual(results.load(merged).kind, "merge")
        for path in (merged, self.dir / "out/totals.json"):
            with self.assertRaisesRegex(results.ResultsError, "has no shard records to merge"):
                results.merge([path])

    def test_bad_files(self):
        for name, text, message in (("t.json", '{"shards": [', "not JSON"), ("e.json", "", "empty file"),
                                    ("n.json", '{"x": NaN}', "not JSON"), ("o.json", "[1]", "not a smoothd result"),
                                    ("u.json", '{"a": 1}', "not a smoothd result")):
            with self.assertRaisesRegex(results.ResultsError, message) as caught:
                results.load(self.put(name, text))
            self.assertIn(name, str(caught.exception))

    def test_dumps_writes_like_smoothd(self):
        text = results.dumps({"a": [1, 2.0, 1e-05, 1e16, None, True], "s": "x\u0008\u007f\u2028é\"", "e": {}, "l": []})
        self.assertEqual(text, '{\n  "a": [\n    1,\n    2.0,\n    1e-05,\n    1e+16,\n    null,\n    true\n  ],\n'
                               '  "s": "x\\u0008\\u007f\\u2028é\\"",\n  "e": {},\n  "l": []\n}')
        self.assertEqual(results.dumps({"x": float("inf")}, pretty=False), '{"x":null}')


if __name__ == "__main__":
    unittest.main()
