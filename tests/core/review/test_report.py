"""The HTML report: self-contained (PNG images inside), unblinded answers, the summary table, hold-out
metrics for validation sessions; opened in headless Chromium when it is installed."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from napari_s2s.core.errors import SessionError
from napari_s2s.core.review.answers import ReaderAnswers, load_readers
from napari_s2s.core.review.create import create_session
from napari_s2s.core.review.report import write_report
from napari_s2s.core.review.session import ReviewSession
from napari_s2s.core.review.stats import merge


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.ids, self.links, self.tables = [], [], [], 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if a.get("id"):
            self.ids.append(a["id"])
        for key in ("href", "src"):
            if a.get(key):
                self.links.append(a[key])
        self.tables += tag == "table"


def _png(src: str) -> bytes:
    assert src.startswith("data:image/png;base64,")
    data = base64.b64decode(src.split(",", 1)[1])
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return data


@pytest.fixture
def answered(review_results, tmp_path):
    s = create_session(
        tmp_path / "s.json",
        review_results["slide"],
        compare=[review_results["gaussian"], review_results["he_gaussian"]],
        title="C2 <review>",
    )
    for name, pick in (("Dr <A>", "left"), ("Dr B", "right")):
        r = ReaderAnswers.open(s, name)
        for g in r.genes:
            r.answer(g, pick, score_left=3, comment=f"{g} & co")
    return ReviewSession.load(s.path)


def test_report_structure(answered, tmp_path):
    readers = load_readers(answered)
    out = write_report(answered, readers, tmp_path / "report.html")
    text = out.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    # self-contained: nothing fetched from elsewhere; every image is an embedded PNG
    assert all(link.startswith(("data:image/png;base64,", "#gene-")) for link in page.links)
    assert len(page.imgs) == 1 + len(answered.genes)  # the preference chart + one panel per gene
    for src in page.imgs:
        _png(src)
    assert [i for i in page.ids if i.startswith("gene-")] == [f"gene-{g}" for g in answered.genes]
    # escaped, unblinded, with the numbers of the merge
    assert "C2 &lt;review&gt;" in text and "Dr &lt;A&gt;" in text and "<A>" not in text
    assert "gaussian" in text and "he_gaussian" in text and "ERBB2 &amp; co" in text
    summary = merge(answered, readers)
    share = summary["overall"]["prefer"]["gaussian"]["share"]
    assert f"{100 * share:.0f}&thinsp;%" in text
    k = summary["agreement"]["kappa"]
    assert "Cohen&rsquo;s kappa" in text and ("undefined" if k is None else f"{k:.2f}") in text
    assert "Hold-out metrics" not in text  # not a validation session


def test_report_of_a_holdout_session_on_a_hex_slide(data_dir, tmp_path):
    from conftest import slide_path

    s = create_session(
        tmp_path / "h.json", slide_path(data_dir, "visium_mouse_brain_dg"), holdout=["gaussian"], genes="top:2"
    )
    out = write_report(ReviewSession.load(s.path), [], tmp_path / "h.html")  # no reader yet
    text = out.read_text(encoding="utf-8")
    assert "Hold-out metrics" in text and "no answers yet" in text
    pcc = s.holdout["metrics"]["gaussian"][s.genes[0]]["pcc"]
    assert f"{pcc:.3f}" in text
    page = _Page()
    page.feed(text)
    assert len(page.imgs) == 2  # no chart without answers; one panel per gene
    import io

    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(_png(page.imgs[0]))).convert("RGB"))
    assert img.shape[1] > 3 * img.shape[0] * 0.8 and img.std() > 20  # three panels (H&E, measured, method)


def test_report_never_over_an_input(answered, tmp_path):
    readers = load_readers(answered)
    before = answered.path.read_bytes()
    with pytest.raises(SessionError, match="is an input"):
        write_report(answered, readers, answered.path)
    with pytest.raises(SessionError, match="is an input"):
        write_report(answered, readers, readers[0].path)
    assert answered.path.read_bytes() == before


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (the HTML structure is tested above)")
def test_report_renders_in_chromium(answered, tmp_path):
    out = write_report(answered, load_readers(answered), tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--window-size=1400,2000",
            out.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB")).astype(float)
    assert img.shape[:2] == (2000, 1400)
    # the top of the page has text, the maps below it have colour (viridis is far from grey)
    sat = img.max(axis=2) - img.min(axis=2)
    assert (sat[400:] > 80).mean() > 0.01 and img[:200].std() > 10
    assert re.search(r"Blinded review", out.read_text(encoding="utf-8"))


def test_gene_panels_carry_a_micrometre_scale_bar(answered, monkeypatch):
    """One bar per gene panel, on the H&E, a round length of at most a quarter of the panel's width."""
    from napari_s2s.core.review import render
    from napari_s2s.core.review.maps import load_maps

    assert render.bar_length_um(6000) == 1000 and render.bar_length_um(900) == 200 and render.bar_length_um(1) == 10
    drawn = []
    real = render.draw_scale_bar
    monkeypatch.setattr(render, "draw_scale_bar", lambda ax, box: drawn.append((ax.get_title(), box)) or real(ax, box))
    maps = load_maps(answered)
    assert maps.units == "um"
    png = render.gene_panel(maps, answered.genes[0])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    ((title, box),) = drawn
    assert title == "H&E" and render.bar_length_um(box[3] - box[2]) <= (box[3] - box[2]) / 4
