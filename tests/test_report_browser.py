"""The HTML report opens in headless Chromium with its tables and images.

A tiny workflow in a temporary folder runs the leaderboard step on fabricated metrics.json with the
same `report(...)` outputs and captions the main Snakefile is meant to declare, then
`snakemake --report` writes report.html. Chromium loads a copy of it with a probe script appended
that decodes every image embedded in the report and records how many loaded; --dump-dom returns
the DOM after the page's scripts ran.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
KINDS = ["label_efficiency", "gains", "per_class", "gain_vs_cost"]

SNAKEFILE = """
from xmbench.leaderboard.build import build_results

CAP = "{captions}"
NAME = "synth_segmentation"
EXPECTED = {expected}

rule all:
    input:
        "results/report.md",

rule leaderboard:
    input:
        [e["path"] for e in EXPECTED if e["exists"]],
    output:
        board=report("results/leaderboard.csv", caption=f"{{CAP}}/leaderboard.rst", category="Leaderboard"),
        table=report(f"results/tables/leaderboard_{{NAME}}.html", caption=f"{{CAP}}/table.rst",
                     category="Tables", labels={{"dataset": "synth", "task": "segmentation"}}),
        label_efficiency=report(f"results/plots/label_efficiency_{{NAME}}.png", caption=f"{{CAP}}/label_efficiency.rst",
                                category="Plots", labels={{"plot": "label efficiency"}}),
        gains=report(f"results/plots/gains_{{NAME}}.png", caption=f"{{CAP}}/gains.rst", category="Plots",
                     labels={{"plot": "gain over scratch"}}),
        per_class=report(f"results/plots/per_class_{{NAME}}.png", caption=f"{{CAP}}/per_class.rst", category="Plots",
                         labels={{"plot": "per class"}}),
        gain_vs_cost=report(f"results/plots/gain_vs_cost_{{NAME}}.png", caption=f"{{CAP}}/gain_vs_cost.rst",
                            category="Plots", labels={{"plot": "gain vs cost"}}),
        md="results/report.md",
    run:
        build_results(list(input), "results", expected=[{{k: v for k, v in e.items() if k != "exists"}}
                                                      for e in EXPECTED])
"""

PROBE = """
<script>
window.addEventListener('load', function () {
  var uris = Object.values(results).map(function (r) { return r.data_uri; })
      .filter(function (u) { return u && u.indexOf('data:image/') === 0; });
  var box = document.createElement('div'); box.id = 'xmbench-probe'; document.body.appendChild(box);
  var done = 0, loaded = 0;
  uris.forEach(function (u) {
    var img = new Image();
    img.onload = function () { if (img.naturalWidth > 0) loaded++; finish(); };
    img.onerror = finish;
    img.src = u;
  });
  function finish() { done++; if (done === uris.length) box.setAttribute('data-images', loaded + '/' + uris.length); }
  if (!uris.length) box.setAttribute('data-images', '0/0');
});
</script>
"""


def chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0:
        pytest.fail(f"{CHROMIUM} is missing and the tests are not root: install Debian's package "
                    "`chromium` (sudo apt-get install -y chromium) to run the report's browser test")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if res.returncode != 0:
            pytest.fail(f"`{' '.join(cmd)}` failed, so {CHROMIUM} cannot be installed:\n{res.stderr[-2000:]}")
    if not CHROMIUM.exists():
        pytest.fail(f"apt-get installed chromium but {CHROMIUM} is still missing")
    return CHROMIUM


def _fabricate(root: Path) -> list[dict]:
    from test_results import VALUES, _record

    expected = []
    for m, by_f in VALUES.items():
        for f, vals in by_f.items():
            for seed, v in enumerate(vals):
                rel = f"inputs/synth/segmentation/native/{m}/{f * 100:g}pct/seed{seed}/metrics.json"
                expected.append({"dataset": "synth", "task": "segmentation", "engine": "native", "method": m,
                                 "fraction": f, "seed": seed, "path": rel, "exists": v != "missing"})
                if v != "missing":
                    (root / rel).parent.mkdir(parents=True)
                    (root / rel).write_text(json.dumps(_record(m, f, seed, v)))
    return expected


@pytest.fixture(scope="module")
def snakemake_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report_wf")
    expected = _fabricate(root)
    (root / "Snakefile").write_text(SNAKEFILE.format(captions=REPO / "xmbench" / "report_captions",
                                                     expected=repr(expected)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    base = [sys.executable, "-m", "snakemake", "--cores", "1", "--snakefile", str(root / "Snakefile")]
    res = subprocess.run(base, cwd=root, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]
    res = subprocess.run(base + ["--report", "report.html"], cwd=root, capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]
    return root


def test_report_html_opens_in_headless_chromium_with_every_image(snakemake_report, tmp_path):
    browser = chromium()
    html = (snakemake_report / "report.html").read_text()
    for kind in KINDS:
        assert f"{kind}_synth_segmentation.png" in html
    assert "Welch" in html and "Holm" in html  # captions made it in
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", PROBE + "</body>"))
    cmd = [str(browser), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=20000", "--dump-dom", probe.as_uri()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    dom = res.stdout
    n_images = len(KINDS)
    assert f'data-images="{n_images}/{n_images}"' in dom, (dom[-1500:], res.stderr[-1500:])
    assert "Loading Snakemake Report" not in dom or 'id="app"' in dom
    app = dom[dom.find('id="app"'):]
    assert "Leaderboard" in app and "Plots" in app, app[:2000]  # the report's own UI rendered its categories


def test_report_screenshot_is_not_blank(snakemake_report, tmp_path):
    browser = chromium()
    shot = tmp_path / "shot.png"
    cmd = [str(browser), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'p'}",
           "--virtual-time-budget=20000", "--window-size=1280,900", f"--screenshot={shot}",
           (snakemake_report / "report.html").as_uri()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-3000:]
    import matplotlib.image as mpimg

    px = mpimg.imread(shot)
    assert px.shape[0] >= 800 and px.std() > 0.02  # something was drawn, not a blank page


def test_report_md_links_resolve(snakemake_report):
    md = (snakemake_report / "results" / "report.md").read_text()
    import re

    links = re.findall(r"\]\(([^)#]+)\)", md)
    assert len([l for l in links if l.endswith(".png")]) == len(KINDS)
    for link in links:
        assert (snakemake_report / "results" / link).is_file(), link
    shutil.rmtree(snakemake_report / ".snakemake", ignore_errors=True)
