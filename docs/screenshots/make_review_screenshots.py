"""Make the README screenshots of a blinded review: the reader's dock (napari under Xvfb) and the report
(headless Chromium).

    xvfb-run -a -s "-screen 0 1700x1100x24" python docs/screenshots/make_review_screenshots.py \
        --slide ../shared/data/her2st_C2.h5ad --methods s2s,gaussian --genes top:8 --budget 30

Makes a session (the methods impute the slide now), answers it as two *scripted* demo readers (not a
real reading: one prefers the map closer to the measured values at the measured spots' neighbours,
one answers at random), and writes ``docs/screenshots/blinded.png`` (the dock mid-session, 1600 px
wide), ``blinded_laptop.png`` (1366x768), ``report.png`` (the report's first screen in Chromium) and
``report_gene.png`` (one gene's panel further down).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def scripted_answers(session, maps) -> None:
    """Two demo readers (see the module docstring); answers saved like the dock saves them."""
    from napari_s2s.core.review.answers import ReaderAnswers

    rng = np.random.default_rng(0)
    smooth = ReaderAnswers.open(session, "Demo reader 1")
    for gene in smooth.genes:
        m = maps.image("measured", gene)[0]
        rough = []
        for k in (0, 1):
            a = maps.image(k, gene)[0]
            rough.append(np.nanmean(np.abs(np.diff(a, axis=0))) + np.nanmean(np.abs(np.diff(a, axis=1))))
        prefer = int(np.argmin(rough))  # the smoother map
        if abs(rough[0] - rough[1]) < 0.02 * np.nanmax(m):
            choice = "cant_tell"
        else:
            choice = "left" if smooth.left_arm(gene) == prefer else "right"
        smooth.answer(gene, choice, score_left=int(rng.integers(2, 6)), score_right=int(rng.integers(2, 6)))
    random = ReaderAnswers.open(session, "Demo reader 2")
    for gene in random.genes:
        random.answer(
            gene,
            str(rng.choice(["left", "right", "cant_tell"], p=[0.4, 0.4, 0.2])),
            comment="scripted demo answer" if gene == random.genes[0] else "",
        )


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--slide", required=True)
    p.add_argument("--methods", default="s2s,gaussian")
    p.add_argument("--genes", default="top:8")
    p.add_argument("--budget", type=float, default=30.0)
    p.add_argument("--out", default=str(HERE))
    p.add_argument("--work", default="", help="folder for the session (default: a temporary one)")
    args = p.parse_args()
    os.environ.setdefault("NAPARI_S2S_CONFIG_DIR", tempfile.mkdtemp(prefix="s2s-shots-"))
    out = Path(args.out)
    work = Path(args.work or tempfile.mkdtemp(prefix="s2s-review-"))
    work.mkdir(parents=True, exist_ok=True)

    from napari_s2s.core.review.answers import load_readers
    from napari_s2s.core.review.create import create_session
    from napari_s2s.core.review.maps import load_maps
    from napari_s2s.core.review.report import write_report
    from napari_s2s.core.review.session import ReviewSession

    path = work / "review.json"
    if path.exists():
        session = ReviewSession.load(path)
    else:
        session = create_session(
            path,
            args.slide,
            methods=args.methods.split(","),
            genes=args.genes,
            budget_s=args.budget,
            title="HER2+ breast cancer, section C2",
            progress=print,
        )
    maps = load_maps(session)
    if not load_readers(session):
        scripted_answers(session, maps)

    import napari
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])

    def pump(seconds: float = 0.3) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.01)

    for name, size in (("blinded", (1600, 1000)), ("blinded_laptop", (1366, 768))):
        viewer = napari.Viewer(title="napari-s2s", show=True)
        viewer.window.resize(*size)
        _, dock = viewer.window.add_plugin_dock_widget("napari-s2s", "Blinded reading")
        dock.open_session(path)
        reader = "Dr Demo"
        dock.start(reader)
        dock.choose("left")
        dock.choose("cant_tell")
        dock.score_left.set_value(4)
        dock.score_right.set_value(2)
        dock.comment_edit.setText("right map: blocky at the tumour edge")
        pump(1.0)
        viewer.screenshot(str(out / f"{name}.png"), canvas_only=False, flash=False)
        print(out / f"{name}.png")
        dock.pause()
        (session.answers_dir / "dr-demo.json").unlink()
        viewer.close()

    report = write_report(session, load_readers(session), work / "report.html")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        print("no Chromium: report screenshots skipped")
        return 0
    for name, size in (("report", "1400,1500"), ("report_full", "1400,6000")):
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--screenshot={out / (name + '.png')}",
                f"--window-size={size}",
                report.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    from PIL import Image

    full = Image.open(out / "report_full.png")
    top = _find_gene_top(report)
    full.crop((0, top, 1400, min(full.height, top + 900))).save(out / "report_gene.png")
    (out / "report_full.png").unlink()
    print(out / "report.png", out / "report_gene.png", report)
    return 0


def _find_gene_top(report: Path) -> int:
    """Pixel row (at 1400 px wide) of the first gene's panel: measured with Chromium's layout."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    js = (
        "<script>document.title=String(Math.round(document.querySelector('.gene').getBoundingClientRect().top"
        "+window.scrollY))</script>"
    )
    probe = report.with_name("probe.html")
    probe.write_text(report.read_text(encoding="utf-8").replace("</body>", js + "</body>"), encoding="utf-8")
    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1400,1500",
            "--dump-dom",
            probe.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
        text=True,
    )
    probe.unlink()
    import re

    m = re.search(r"<title>(\d+)</title>", dom.stdout)
    return max(0, int(m.group(1)) - 10) if m else 1400


if __name__ == "__main__":
    raise SystemExit(main())
