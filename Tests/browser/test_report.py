"""The HTML report as a browser shows it: headless Chromium renders `smoothd report` pages of the fixtures and the
live page of a running `smoothd serve`, and the rendered DOM is checked against the data the page embeds and against
the independent NumPy reference (Fixtures/reference.py).

    SMOOTHD=.build/debug/smoothd python3 -m unittest discover -s Tests/browser -t Tests/browser

Fails (never skips) when chromium or the binary is missing: Scripts/setup installs Debian's chromium.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "Fixtures"
sys.path.insert(0, str(FIXTURES))
import reference  # noqa: E402

BINARY = os.environ.get("SMOOTHD", str(ROOT / ".build" / "debug" / "smoothd"))
INVALID = ["invalid/label_out_of_range_eq_k.lshd.zst", "invalid/truncated_mid_logits.lshd.zst"]


class Node:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent, self.children, self.text = tag, dict(attrs), parent, [], ""

    def all(self, tag=None, cls=None):
        """Descendants (depth first) with this tag and/or class."""
        out = []
        for child in self.children:
            if (tag is None or child.tag == tag) and (cls is None or cls in child.attrs.get("class", "").split()):
                out.append(child)
            out += child.all(tag, cls)
        return out

    def text_content(self):
        return self.text + "".join(c.text_content() for c in self.children)


class DOM(HTMLParser):
    """The dumped DOM as a tree of Nodes (html.parser: no third-party parser needed)."""
    VOID = {"meta", "link", "br", "hr", "img", "input", "col", "area", "base", "wbr", "source"}

    def __init__(self, html):
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {}, None)
        self.cur = self.root
        self.by_id = {}
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, attrs, self.cur)
        self.cur.children.append(node)
        if "id" in node.attrs:
            self.by_id[node.attrs["id"]] = node
        if tag not in self.VOID:
            self.cur = node

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.cur = self.cur.parent

    def handle_endtag(self, tag):
        node = self.cur
        while node is not self.root and node.tag != tag:
            node = node.parent
        if node is not self.root:
            self.cur = node.parent

    def handle_data(self, data):
        self.cur.text += data


def chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise AssertionError("chromium is not installed (Scripts/setup installs Debian's chromium); the browser tests cannot run")
    return exe


def browse(url, tmp: Path, screenshot: Path | None = None) -> str:
    """The DOM Chromium builds for url (and a 1280x800 screenshot when asked)."""
    base = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={tmp / 'profile'}",
            "--window-size=1280,800"]
    if screenshot is not None:
        subprocess.run(base + [f"--screenshot={screenshot}", url], check=True, capture_output=True, timeout=120)
    proc = subprocess.run(base + ["--dump-dom", url], check=True, capture_output=True, text=True, timeout=120)
    return proc.stdout


def pooled(files, bins):
    """NumPy reference of several shards pooled: (ece, mce, bins)."""
    acc = None
    for f in files:
        _, a = reference.accumulate_shard(FIXTURES / f, top_ks=(5,), ece_bins=(bins,), epsilons=(0.1,))
        acc = a if acc is None else acc.merge(a)
    result, calibration = acc.result(), acc.calibration()
    return result["ece"][str(bins)], calibration["mce"][str(bins)], calibration["reliability"][str(bins)]


class ReportPage(unittest.TestCase):
    """Shared checks of a rendered page against the document it embeds."""

    def embedded(self, dom):
        script = dom.by_id.get("smoothd-data")
        self.assertIsNotNone(script, "no <script id=smoothd-data>")
        self.assertEqual(script.attrs.get("type"), "application/json")
        return json.loads(script.text_content())

    def check_diagram(self, dom, id_, metrics, where):
        """One histogram bar per non-empty bin with its count in its label; accuracy bars' heights proportional to
        accuracy; ECE and MCE texts equal to the JSON."""
        svg = dom.by_id.get(f"{id_}-reliability")
        self.assertIsNotNone(svg, f"{where}: no reliability diagram")
        bins = metrics["reliability"]
        hist = svg.all("rect", "hist-bar")
        self.assertEqual([int(b.attrs["data-bin"]) for b in hist], [i for i, b in enumerate(bins) if b["count"] > 0], where)
        for bar in hist:
            count = bins[int(bar.attrs["data-bin"])]["count"]
            self.assertEqual(int(bar.attrs["data-count"]), count, where)
            self.assertIn(f"{count} rows", bar.attrs["aria-label"], where)
        panel = svg.all("g", "accuracy")[0]
        plot_height = float(panel.attrs["data-plot-height"])
        acc = svg.all("rect", "acc-bar")
        self.assertEqual(len(acc), sum(1 for b in bins if b["count"] > 0), where)
        for bar in acc:
            want = bins[int(bar.attrs["data-bin"])]["accuracy"]
            self.assertEqual(float(bar.attrs["data-accuracy"]), want, where)
            self.assertAlmostEqual(float(bar.attrs["height"]), want * plot_height, delta=0.006, msg=where)
        for name in ("ece", "mce"):
            text = dom.by_id[f"{id_}-{name}"]
            want = metrics[name]
            self.assertEqual(float(text.attrs["data-value"]), want, f"{where} {name}")
            shown = re.fullmatch(rf"{name.upper()} (\d+\.\d{{4}})", text.text_content().strip())
            self.assertIsNotNone(shown, f"{where}: {name} text {text.text_content()!r}")
            self.assertLessEqual(abs(float(shown.group(1)) - want), 0.5e-4 + 1e-12, f"{where} {name}")
        return hist, acc


class FixtureReportTest(ReportPage):
    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="smoothd-browser-"))
        cls.valid = sorted(f"valid/{p.name}" for p in (FIXTURES / "valid").glob("*.lshd.zst"))
        cls.out = cls.tmp / "fixtures.html"
        proc = subprocess.run([BINARY, "report", "--ece-bins", "10", "--group-by", "none", "-o", str(cls.out)]
                              + [str(FIXTURES / f) for f in cls.valid + INVALID], capture_output=True, text=True, timeout=600)
        if proc.returncode != 1:  # the invalid shards make it exit 1, the report still written
            raise AssertionError(f"smoothd report exited {proc.returncode}:\n{proc.stderr}")
        cls.dom = DOM(browse(cls.out.as_uri(), cls.tmp, screenshot=cls.tmp / "fixtures.png"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_self_contained(self):
        html = self.out.read_text(encoding="utf-8")
        self.assertNotRegex(html, r"(?i)<script(?![^>]*application/json)", "a script other than the data block")
        self.assertNotRegex(html, r"(?i)(src|href)\s*=\s*\"(https?:)?//", "something fetched from the network")
        self.assertIn("@media print", html)
        self.assertGreater((self.tmp / "fixtures.png").stat().st_size, 10_000, "the screenshot is empty")

    def test_diagram_matches_embedded_data_and_reference(self):
        data = self.embedded(self.dom)
        self.assertEqual(len(data["groups"]), 1)
        group = data["groups"][0]
        hist, _ = self.check_diagram(self.dom, "group-0", group, "group-0")
        self.assertGreater(len(hist), 5, "the fixtures fill several bins")
        ece, mce, bins = pooled(self.valid, 10)
        self.assertLessEqual(abs(group["ece"] - ece), 1e-4)
        self.assertLessEqual(abs(group["mce"] - mce), 1e-4)
        self.assertEqual([b["count"] for b in group["reliability"]], [b["count"] for b in bins])
        for got, want in zip(group["reliability"], bins):
            if want["count"]:
                self.assertTrue(math.isclose(got["accuracy"], want["accuracy"], rel_tol=1e-9))
                # smoothd's confidences come from its float32 kernel: 1e-6 relative, as in the Swift fixture tests.
                self.assertTrue(math.isclose(got["mean_confidence"], want["mean_confidence"], rel_tol=1e-6))

    def test_header_and_invalid_shards(self):
        options = self.dom.by_id["options"]
        self.assertEqual(options.attrs["data-ece-bins"], "10")
        self.assertIn("ε = 0.1", options.text_content())
        expected = {e["file"]: e for e in json.loads((FIXTURES / "expected.json").read_text())["invalid"]}
        rows = self.dom.root.all("tr", "invalid-shard")
        self.assertEqual(len(rows), len(INVALID))
        for row, f in zip(rows, INVALID):
            self.assertEqual(row.attrs["data-kind"], expected[f]["kind"])
            self.assertEqual(row.attrs["data-offset"], str(expected[f]["offset"]))
            self.assertIn(f, row.text_content())


class RunsReportTest(ReportPage):
    """Fixtures/runs: two models at several checkpoints; trends in checkpoint order."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="smoothd-browser-"))
        runs = json.loads((FIXTURES / "runs" / "expected.json").read_text())
        cls.files = runs["files"]
        cls.out = cls.tmp / "runs.html"
        proc = subprocess.run([BINARY, "report", "-o", str(cls.out)] + [str(FIXTURES / f["file"]) for f in cls.files],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode not in (0, 1):
            raise AssertionError(f"smoothd report exited {proc.returncode}:\n{proc.stderr}")
        cls.dom = DOM(browse(cls.out.as_uri(), cls.tmp))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_every_group_has_its_diagram(self):
        data = self.embedded(self.dom)
        self.assertGreater(len(data["groups"]), 4)
        for i, group in enumerate(data["groups"]):
            self.check_diagram(self.dom, f"group-{i}", group, f"group {group['key']}")
        self.check_diagram(self.dom, "total", data["total"], "total")

    def test_eval_json_input_gives_the_same_groups(self):
        """An eval --json output is read as smoothd merge reads it: its groups are eval's, bit for bit."""
        files = [str(FIXTURES / f["file"]) for f in self.files]
        proc = subprocess.run([BINARY, "eval", "--json"] + files, capture_output=True, text=True, timeout=600)
        doc = json.loads(proc.stdout)
        (self.tmp / "eval.json").write_text(proc.stdout)
        out = self.tmp / "from-json.html"
        subprocess.run([BINARY, "report", "-o", str(out), str(self.tmp / "eval.json")], capture_output=True, timeout=600)
        data = self.embedded(DOM(out.read_text(encoding="utf-8")))
        self.assertEqual(data["groups"], doc["groups"])
        self.assertEqual(data["groups"], self.embedded(self.dom)["groups"])

    def test_trend_points_in_checkpoint_order(self):
        data = self.embedded(self.dom)
        # Expected order from the fixtures' own meta: by step (every checkpoint here states one).
        steps = {}
        for f in self.files:
            meta = f["meta"] or {}
            if isinstance(meta.get("split"), str) and "checkpoint" in meta:
                steps[(meta["model"], meta["split"], str(meta["checkpoint"]))] = meta["step"]
        families = self.dom.root.all("div", "trend-family")
        self.assertGreaterEqual(len(families), 2, "lm-a and lm-b validation have several checkpoints")
        seen = set()
        for family in families:
            key = json.loads(family.attrs["data-key"])
            want = sorted((c for (m, s, c) in steps if (m, s) == (key["model"], key["split"])), key=lambda c: steps[(key["model"], key["split"], c)])
            groups = {str(g["key"]["checkpoint"]): g for g in data["groups"]
                      if g["key"]["model"] == key["model"] and g["key"]["split"] == key["split"] and g["key"]["checkpoint"] is not None}
            for metric, field in (("loss", "loss"), ("nll", "nll"), ("accuracy", "accuracy"), ("top_k_accuracy", "top_k_accuracy"), ("ece", "ece")):
                points = [p for p in family.all("circle", "trend-point") if p.attrs["data-metric"] == metric]
                order = [p.attrs["data-checkpoint"] for p in sorted(points, key=lambda p: int(p.attrs["data-order"]))]
                self.assertEqual(order, want, f"{key} {metric}")
                xs = [float(p.attrs["cx"]) for p in sorted(points, key=lambda p: int(p.attrs["data-order"]))]
                self.assertEqual(xs, sorted(xs), f"{key} {metric}: points left to right in order")
                for p in points:
                    self.assertEqual(float(p.attrs["data-value"]), groups[p.attrs["data-checkpoint"]][field], f"{key} {metric}")
            seen.add((key["model"], key["split"]))
        self.assertIn(("lm-a", "validation"), seen)
        self.assertIn(("lm-b", "validation"), seen)


class LivePageTest(ReportPage):
    """`serve` answers GET / with the report of its totals and GET /totals.json with the file's bytes."""

    def test_live_page(self):
        tmp = Path(tempfile.mkdtemp(prefix="smoothd-live-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        spool, out = tmp / "spool", tmp / "out"
        spool.mkdir()
        files = ["valid/k2.lshd.zst", "valid/f16_ignore0.lshd.zst", "valid/num_rows_stated.lshd.zst"]
        log = open(tmp / "serve.log", "w+")
        self.addCleanup(log.close)
        proc = subprocess.Popen([BINARY, "serve", "--spool", str(spool), "--output", str(out), "--metrics-listen", "127.0.0.1:0",
                                 "--log-level", "info"], stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: (proc.poll() is None and proc.send_signal(signal.SIGTERM), proc.wait(30)))
        port = None
        deadline = time.monotonic() + 120
        while port is None and time.monotonic() < deadline:
            time.sleep(0.2)
            log.seek(0)
            m = re.search(r"metrics server listening.*?127\.0\.0\.1:(\d+)", log.read())
            port = m and int(m.group(1))
            self.assertIsNone(proc.poll(), "serve exited early")
        self.assertIsNotNone(port, "serve did not say where it listens")
        for i, f in enumerate(files):
            shutil.copy(FIXTURES / f, spool / f".{i}.tmp")
            os.rename(spool / f".{i}.tmp", spool / f"s{i}.lshd.zst")
        base = f"http://127.0.0.1:{port}"
        totals = None
        while time.monotonic() < deadline:
            with urllib.request.urlopen(base + "/totals.json", timeout=10) as r:
                self.assertEqual(r.headers["Content-Type"], "application/json")
                totals = json.loads(r.read())
            if totals["shards_ok"] == len(files):
                break
            time.sleep(0.3)
        self.assertEqual(totals["shards_ok"], len(files))
        self.assertEqual(totals, json.loads((out / "totals.json").read_text()), "GET /totals.json is the file")
        time.sleep(1.1)  # past the page cache's second
        dom = DOM(browse(base + "/", tmp))
        data = self.embedded(dom)
        self.assertEqual(data["total"]["shards_ok"], len(files))
        self.assertEqual(data["total"]["ece"], totals["ece"])
        self.check_diagram(dom, "total" if len(data["groups"]) != 1 else "group-0", data["total"], "live total")
        ece, mce, _ = pooled(files, 15)
        self.assertLessEqual(abs(float(dom.by_id[("total" if len(data["groups"]) != 1 else "group-0") + "-ece"].attrs["data-value"]) - ece), 1e-4)


if __name__ == "__main__":
    unittest.main()
