"""al-bench-report --html: one self-contained page, checked as text and in a real headless browser."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from test_report import REFERENCE, make_run
from test_report_figures import quickstart_like

from al_bench.report.cli import main

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
# Appended to a copy of the page only: reports, once loaded, how many images decoded and tables exist
PROBE = """<script>window.addEventListener("load", () => {
  const imgs = [...document.images];
  document.body.setAttribute("data-probe", JSON.stringify({
    images: imgs.length, decoded: imgs.filter(i => i.complete && i.naturalWidth > 100).length,
    tables: document.querySelectorAll("table.summary").length,
    links: document.querySelectorAll("a[href]").length}));
});</script></body>"""


@pytest.fixture
def sweep_report(tmp_path):
    root = tmp_path / "sweep"
    quickstart_like(root, long_rows=True)
    make_run(root, "cifar/random/0", "random", 0, [0.5, 0.6, 0.7])  # a second setting: a second table
    make_run(root, "cifar/entropy/1", "entropy", 1, [0.5, 0.65, 0.72])
    make_run(root, "cifar/random/1", "random", 1, [0.52, 0.61], done=False)  # incomplete
    make_run(root, "cifar/entropy/0", "entropy", 0, [0.5], done=False, failed=True)  # failed
    assert main([str(root), "--html", "--reference", str(REFERENCE)]) == 0
    return root, root / "report" / "report.html"


def test_html_is_self_contained_and_lists_everything(sweep_report):
    root, page = sweep_report
    text = page.read_text()
    pngs = sorted(p.name for p in page.parent.glob("*.png"))
    assert len(pngs) == 4  # curves and pairwise per setting
    images = re.findall(r'<img src="([^"]+)" alt="([^"]+)"', text)
    assert sorted(alt for _, alt in images) == pngs and all(src.startswith("data:image/png;base64,") for src, _ in images)
    assert not re.search(r'(src|href)="(https?:|//|file:)', text) and "<link" not in text and "<script" not in text
    assert text.count('<table class="summary">') == 2  # one per setting
    assert "some_rather_long_option_name" in text  # the sweep's differing knobs
    failed = re.search(r'<h2 id="failed">Failed runs \(1\)</h2>(.*?)<h2', text, re.S).group(1)
    assert 'href="../cifar/entropy/0/"' in failed and "CUDA out of memory" in failed
    incomplete = re.search(r'<h2 id="incomplete">Incomplete runs \((\d+)\)</h2>(.*?)<h2', text, re.S)
    assert 'href="../cifar/random/1/"' in incomplete.group(2)
    for href in re.findall(r'href="([^"]+)"', text):  # every link leads to a run directory
        assert (page.parent / href / "metrics.jsonl").exists() or (page.parent / href / "FAILED").exists(), href


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium); "
                                             "the browser check of report.html needs a real headless browser")
def test_html_report_opens_in_a_headless_browser(sweep_report, tmp_path):
    import json

    from PIL import Image

    _, page = sweep_report
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", PROBE))
    common = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
              f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600"]
    dom = subprocess.run([*common, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=60)
    found = re.search(r'data-probe="([^"]+)"', dom.stdout)
    assert found, dom.stderr[-2000:]
    state = json.loads(found.group(1).replace("&quot;", '"'))
    assert state == {"images": 4, "decoded": 4, "tables": 2, "links": state["links"]} and state["links"] >= 8
    shot = tmp_path / "page.png"
    subprocess.run([*common, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=60)
    image = Image.open(shot).convert("L")
    assert image.size == (1200, 1600)
    histogram = image.histogram()
    non_white = sum(histogram[:250]) / (image.size[0] * image.size[1])
    assert non_white > 0.02, f"screenshot nearly blank: {non_white:.3%} non-white pixels"
