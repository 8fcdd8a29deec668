#!/usr/bin/python3
"""The report's own test: report.py on the fixtures (fixtures/: consensus.json, sync.json and hash.json from real quick
runs, disk.json from a real `bench disk` with each run's syncs cut to 40, sync-v1.json from the sync bench before
its scale section, e2e.json fabricated by make_e2e.py in e2e.py's schema, e2e-real.json from a short real run) in a
temporary directory, as `./build.sh bench report` runs it; checks that every expected PNG is a real image, that
report.html embeds each of them and links its file, and that missing fields, old formats and broken files are
skipped, not fatal.

    /usr/bin/python3 test_report.py      (or ./build.sh bench report --test, which installs matplotlib first)

Needs matplotlib (Debian's python3-matplotlib, for /usr/bin/python3): without it every test is skipped, said so,
and the exit code is 77 (ctest's SKIP_RETURN_CODE convention). Last line: 'N passed, N failed, N skipped'.
"""
import base64
import copy
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")
REPORT = os.path.join(HERE, "report.py")

try:
    import matplotlib  # noqa: F401
    HAVE_MATPLOTLIB = True
except ImportError:
    HAVE_MATPLOTLIB = False
NO_MATPLOTLIB = (f"matplotlib is not installed for {sys.executable} (Debian: python3-matplotlib for /usr/bin/python3; "
                 f"./build.sh bench report --test installs it)")

EXPECTED = {
    "consensus": ["consensus-cdf.png", "consensus-throughput.png"],
    "sync": ["sync-pause.png", "sync-bytes.png", "sync-subblocks.png", "sync-scale-pause.png", "sync-scale-bytes.png"],
    "hash": ["hash-throughput.png"],
    "e2e": ["e2e-rps.png", "e2e-bytes.png", "e2e-identical.png", "e2e-pause-unpinned.png", "e2e-pause-pinned.png",
            "e2e-latency.png"],
    "disk": ["disk-blocks.png", "disk-pause.png", "disk-bytes.png"],
}


def fixture(name):
    with open(os.path.join(FIXTURES, f"{name}.json")) as f:
        return json.load(f)


def png_size(path):
    """(width, height) of a PNG file, or fails."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


class ReportTest(unittest.TestCase):
    def setUp(self):
        if not HAVE_MATPLOTLIB:
            self.skipTest(NO_MATPLOTLIB)
        self.dir = tempfile.mkdtemp(prefix="plover-report-test.")

    def tearDown(self):
        if hasattr(self, "dir"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def write(self, name, data):
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(data if isinstance(data, str) else json.dumps(data))

    def run_report(self, *args, expect_rc=0):
        r = subprocess.run([sys.executable, REPORT, "--dir", self.dir, *args], capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, expect_rc, f"report.py exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
        return r.stdout + r.stderr

    def html(self):
        with open(os.path.join(self.dir, "report.html")) as f:
            return f.read()

    def assert_embedded(self, html, png):
        """report.html shows png (its bytes as a data URI, inside a figure that links the file by name)."""
        m = re.search(r'<figure id="%s"><img src="data:image/png;base64,([A-Za-z0-9+/=]+)"' % re.escape(png), html)
        self.assertIsNotNone(m, f"report.html has no figure for {png}")
        with open(os.path.join(self.dir, png), "rb") as f:
            self.assertEqual(base64.b64decode(m.group(1)), f.read(), f"the image embedded for {png} is not the file")
        self.assertIn(f'<a href="{png}">{png}</a>', html)

    def test_every_benchmark_gets_its_plots_and_the_page_shows_them(self):
        self.write("consensus.json", fixture("consensus"))
        self.write("sync.json", fixture("sync"))
        self.write("hash.json", fixture("hash"))
        self.write("e2e.json", fixture("e2e"))
        self.write("disk.json", fixture("disk"))
        out = self.run_report()
        html = self.html()
        for bench, pngs in EXPECTED.items():
            self.assertIn(f"{bench}.json", html, f"the page does not list {bench}.json")
            for png in pngs:
                path = os.path.join(self.dir, png)
                self.assertTrue(os.path.exists(path), f"{png} not written; report.py said:\n{out}")
                w, h = png_size(path)
                self.assertGreater(w, 400, png)
                self.assertGreater(h, 250, png)
                self.assertGreater(os.path.getsize(path), 10_000, f"{png} is suspiciously small")
                self.assertIn(f"wrote {path}", out)
                self.assert_embedded(html, png)
        written = sorted(f for f in os.listdir(self.dir) if f.endswith(".png"))
        self.assertEqual(written, sorted(p for ps in EXPECTED.values() for p in ps))
        # key figures of each benchmark
        self.assertIn("failover_le_50ms", html)                 # consensus targets
        self.assertIn("the target point", html)                 # sync's target rows
        self.assertIn("req/s Plover", html)                     # e2e summary, computed from the runs
        self.assertIn("one client, one request at a time", html)
        self.assertIn("pause added by the disk", html)          # disk summary
        self.assertNotIn("Not found", html)
        self.assertNotIn("plotter failed", out)

    def test_a_real_e2e_run(self):
        # fixtures/e2e-real.json: a short real `bench e2e` (one round, R = 100000, unpinned and pinned)
        self.write("e2e.json", fixture("e2e-real"))
        out = self.run_report()
        html = self.html()
        for png in EXPECTED["e2e"]:
            self.assertTrue(os.path.exists(os.path.join(self.dir, png)), f"{png} missing:\n{out}")
            self.assert_embedded(html, png)
        self.assertIn("Plover/unrepl.", html)
        self.assertIn("plover_rps_ge_1.5x_checkpoint_pinned", html)   # e2e.py's targets

    def test_missing_fields_skip_plots_not_the_report(self):
        # e2e: unreplicated runs only, no syncs, no bytes, no latency rows; consensus: percentiles only (no "cdf");
        # sync: the format before the scale section (modes plover/remus, no sub-blocks)
        e2e = fixture("e2e")
        e2e["runs"] = [{k: r[k] for k in ("mode", "pinned", "round", "keyspace", "rps")} for r in e2e["runs"]
                       if r["mode"] == "unreplicated"]
        del e2e["latency"]
        consensus = copy.deepcopy(fixture("consensus"))
        for group in ("raw_rtt", "latency", "throughput"):
            for row in consensus[group].values():
                row.pop("cdf", None)
        self.write("e2e.json", e2e)
        self.write("consensus.json", consensus)
        self.write("sync.json", fixture("sync-v1"))
        out = self.run_report()
        for png in ("e2e-rps.png", "consensus-cdf.png", "sync-pause.png", "sync-bytes.png"):
            self.assertTrue(os.path.exists(os.path.join(self.dir, png)), f"{png} missing:\n{out}")
        for png in ("e2e-bytes.png", "e2e-identical.png", "e2e-latency.png", "sync-scale-pause.png", "sync-subblocks.png"):
            self.assertFalse(os.path.exists(os.path.join(self.dir, png)), f"{png} drawn without its fields")
        html = self.html()
        self.assertIn("skipped e2e-identical", html)
        self.assertIn("skipped sync-scale", html)
        self.assertIn("drawn from their percentiles only", html)   # the CDF's caption says it is coarse
        self.assertIn("hash.json", html)                            # named as not found

    def test_old_plots_are_replaced_and_foreign_ones_kept(self):
        self.write("sync.json", fixture("sync"))
        shutil.copy(os.path.join(FIXTURES, "sync.json"), os.path.join(self.dir, "unrelated.json"))
        for name in ("sync-from-an-old-run.png", "someone-elses.png"):
            with open(os.path.join(self.dir, name), "wb") as f:
                f.write(b"\x89PNG\r\n\x1a\n" + b"\0" * 16)
        self.run_report()
        self.assertFalse(os.path.exists(os.path.join(self.dir, "sync-from-an-old-run.png")))
        html = self.html()
        self.assertIn("Other plots", html)
        self.assert_embedded(html, "someone-elses.png")
        self.assertIn("unrelated.json", html)      # an unknown JSON gets a generic table

    def test_plot_one_benchmark_without_the_page(self):
        self.write("consensus.json", fixture("consensus"))
        self.write("e2e.json", fixture("e2e"))
        self.run_report("--plot", "consensus", "--no-html")
        files = sorted(os.listdir(self.dir))
        self.assertEqual(files, ["consensus-cdf.png", "consensus-throughput.png", "consensus.json", "e2e.json"])

    def test_a_broken_json_is_reported_and_the_rest_still_plotted(self):
        self.write("e2e.json", '{"runs": [')      # a benchmark killed while writing
        self.write("consensus.json", fixture("consensus"))
        out = self.run_report(expect_rc=1)
        self.assertIn("e2e.json: cannot read", out)
        self.assertTrue(os.path.exists(os.path.join(self.dir, "consensus-cdf.png")))
        self.assertIn("cannot read", self.html())

    def test_no_json_at_all(self):
        self.run_report()
        html = self.html()
        self.assertIn("Not found", html)
        self.assertNotIn("<figure", html)


def main():
    if not HAVE_MATPLOTLIB:
        print(f"SKIPPED: the report tests: {NO_MATPLOTLIB}")
    result = unittest.TextTestRunner(verbosity=2).run(unittest.defaultTestLoader.loadTestsFromTestCase(ReportTest))
    failed = len(result.failures) + len(result.errors)
    skipped = len(result.skipped)
    print(f"{result.testsRun - failed - skipped} passed, {failed} failed, {skipped} skipped")
    if failed:
        return 1
    return 77 if skipped == result.testsRun else 0


if __name__ == "__main__":
    sys.exit(main())
