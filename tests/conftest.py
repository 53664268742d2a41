"""Shared fixtures: where the real slides are, and cached reads of them.

Tests that need ``../shared/data`` skip when it is absent, unless ``NAPARI_S2S_REQUIRE_DATA=1``
(as in CI), where they fail instead.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from napari_s2s.core.methods.base import ImputationTask

ROOT = Path(__file__).resolve().parents[1]

#: The shared slides by short name -> path relative to the data folder.
SLIDES = {
    "visium_mouse_brain": "visium_mouse_brain",
    "visium_mouse_brain_dg": "visium_mouse_brain_dg.h5ad",
    "her2st_C2": "her2st_C2.h5ad",
    "her2st_B4": "her2st_B4.h5ad",
    "st_breast_cancer_layer2": "st_breast_cancer_layer2.h5ad",
    "st_mouse_olfactory_bulb": "st_mouse_olfactory_bulb.h5ad",
}


def data_root() -> Path | None:
    env = os.environ.get("NAPARI_S2S_DATA")
    p = Path(env) if env else ROOT.parent / "shared" / "data"
    return p if p.is_dir() else None


def _require() -> bool:
    return os.environ.get("NAPARI_S2S_REQUIRE_DATA", "") not in ("", "0")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder of real shared slides (skips, or fails under NAPARI_S2S_REQUIRE_DATA=1)."""
    p = data_root()
    if p is None:
        if _require():
            pytest.fail("../shared/data (or $NAPARI_S2S_DATA) is missing and NAPARI_S2S_REQUIRE_DATA=1")
        pytest.skip("real slides not available (../shared/data or $NAPARI_S2S_DATA)")
    return p


@pytest.fixture(scope="session")
def formats_dir(data_dir) -> Path:
    """``../shared/data/formats``: small real Xenium, Visium HD and SpatialData files (read-only)."""
    p = data_dir / "formats"
    if not p.is_dir():
        if _require():
            pytest.fail(f"{p} is missing")
        pytest.skip(f"{p} is missing")
    return p


def writable_copy(src: Path, dst: Path) -> Path:
    """Copy a shared file or folder (read-only there) into ``dst`` with writable files and folders,
    to derive variants and bad inputs from real files."""
    import shutil

    if src.is_dir():
        shutil.copytree(src, dst, copy_function=shutil.copyfile)
        for p in [dst, *dst.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        dst.chmod(0o644)
    return dst


def slide_path(data_dir: Path, name: str) -> Path:
    p = data_dir / SLIDES[name]
    if not p.exists():
        if _require():
            pytest.fail(f"shared slide {p} is missing")
        pytest.skip(f"shared slide {p} is missing")
    return p


@cache
def _read_cached(path: str):
    from napari_s2s.core.data.io import read_slide

    return read_slide(path)


@pytest.fixture(scope="session")
def read_shared(data_dir):
    """``read_shared(name) -> Slide``: read a shared slide once per session (treat it as read-only)."""

    def _read(name: str):
        return _read_cached(str(slide_path(data_dir, name)))

    return _read


@pytest.fixture(scope="session")
def synthetic_slide():
    """The built-in synthetic slide (read-only: do not modify)."""
    from napari_s2s.core.data.synthetic import make_synthetic_slide

    return make_synthetic_slide()


# ---------------------------------------------------------------------- method tests
def make_square_task(
    values_fn=lambda r, c, g: r * 10.0 + c + g, n=16, genes=2, noise=0.0, seed=0, targets=None
) -> ImputationTask:
    """A square-lattice task: measured on the even/even sub-lattice of an ``n x n`` grid, values
    ``values_fn(row, col, gene)`` (plus Gaussian ``noise``), targets every other node by default."""
    import numpy as np

    from napari_s2s.core.methods import ImputationTask

    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[0:n, 0:n]
    r, c = rr.ravel(), cc.ravel()
    meas = (r % 2 == 0) & (c % 2 == 0)
    vals = np.stack([values_fn(r[meas], c[meas], g) for g in range(genes)], axis=1).astype(np.float64)
    vals = vals + rng.normal(0, noise, vals.shape) if noise else vals
    tr, tc = (r[~meas], c[~meas]) if targets is None else targets
    return ImputationTask(
        kind="square",
        measured_rows=r[meas],
        measured_cols=c[meas],
        measured_values=vals.astype(np.float32),
        genes=tuple(f"g{i}" for i in range(genes)),
        target_rows=np.asarray(tr),
        target_cols=np.asarray(tc),
    )


@pytest.fixture
def square_task():
    """:func:`make_square_task`."""
    return make_square_task


# ---------------------------------------------------------------------- the dock as users get it
#: The dock widget's display name in the npe2 manifest (src/napari_s2s/napari.yaml).
DOCK_NAME = "S2S-ST imputation"


@pytest.fixture
def plugin_dock(make_napari_viewer, tmp_path, monkeypatch):
    """``plugin_dock(size=None, **viewer_kwargs) -> widget``: the S2S dock added the way users get it,
    through napari's plugin dock contribution (its viewer is then napari's public proxy), with its
    panels placed (the review table's dock); ``size=(w, h)`` shows the window at that size first.
    Settings persist in a temporary folder; jobs run in real worker threads."""
    from qtpy.QtWidgets import QApplication

    monkeypatch.setenv("NAPARI_S2S_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("NAPARI_S2S_SYNC", raising=False)

    def make(size=None, **kwargs):
        viewer = make_napari_viewer(show=size is not None, **kwargs)
        if size is not None:
            viewer.window.resize(*size)
            QApplication.processEvents()
        _, widget = viewer.window.add_plugin_dock_widget("napari-s2s", DOCK_NAME)
        for _ in range(3):  # the review dock is placed once the event loop runs
            QApplication.processEvents()
        return widget

    return make


# ---------------------------------------------------------------------- review sessions
#: Genes of the review-session tests on HER2ST C2 (detected in most spots, varied patterns).
REVIEW_GENES = ["ERBB2", "SCD", "IGHM", "FABP7"]


@pytest.fixture(scope="session")
def review_results(data_dir, tmp_path_factory):
    """Two real result files of HER2ST C2 (``gaussian`` and ``he_gaussian`` on the x2 dense grid, 4
    genes) in a session-wide folder: ``{"slide": path, "gaussian": path, "he_gaussian": path}``.
    Treat them as read-only (copy them to change them)."""
    import warnings

    from napari_s2s.core.data.io import read_slide
    from napari_s2s.core.review.create import dense_adata
    from napari_s2s.core.s2s.results import write_imputed

    slide_file = slide_path(data_dir, "her2st_C2")
    folder = tmp_path_factory.mktemp("review_results")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slide = read_slide(slide_file)
    out = {"slide": slide_file}
    for method in ("gaussian", "he_gaussian"):
        out[method] = write_imputed(
            dense_adata(slide, REVIEW_GENES, method), folder / f"C2_{method}.h5ad", source=slide_file
        )
    return out


#: A tiny, fast, deterministic S2S network for tests that need a trained engine (not its quality).
TINY_NETWORK = dict(
    budget_s=None,
    max_steps=4,
    threads=1,
    natural_images=False,
    features=8,
    blocks=1,
    layers=2,
    growth=8,
    window=4,
    heads=2,
    mlp_ratio=1.0,
    patch=12,
    batch_size=4,
)


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(**overrides)``: the ``fast`` preset's config with :data:`TINY_NETWORK` and overrides."""
    from napari_s2s.core.s2s.engine import S2SConfig

    def make(**overrides):
        return S2SConfig.from_preset("fast", **{**TINY_NETWORK, **overrides})

    return make
