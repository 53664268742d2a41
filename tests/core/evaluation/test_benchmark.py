"""The hold-out protocol: masks, genes, isolation of hidden values, schema, determinism."""

from __future__ import annotations

import gc
import json
import types

import numpy as np
import pytest
import scipy.sparse as sp

from napari_s2s.core import methods as methods_mod
from napari_s2s.core.data.lattice import measured_mask
from napari_s2s.core.data.slide import Slide
from napari_s2s.core.data.synthetic import make_synthetic_slide
from napari_s2s.core.errors import SlideError
from napari_s2s.core.evaluation.benchmark import (
    build_holdout,
    default_methods,
    holdout_masks,
    markdown_table,
    run_benchmark,
    score,
)
from napari_s2s.core.methods import METHODS, ImputationTask

SENTINEL_BASE = 400


@pytest.fixture
def temp_methods():
    """Register throw-away methods for one test and remove them afterwards."""
    added = []

    def add(name, cls):
        methods_mod.register(name)(cls)
        added.append(name)

    yield add
    for name in added:
        METHODS.pop(name, None)


def _sentinel_slide() -> Slide:
    """A synthetic slide plus a gene 'Sentinel' whose counts are huge and unique on hidden spots only."""
    base = make_synthetic_slide(n_rows=20, n_cols=40, n_noise_genes=3)
    use = base.usable()
    measured, hidden = holdout_masks(base)
    rng = np.random.default_rng(5)
    col = np.zeros(base.n_spots, dtype=np.float32)
    usable_idx = np.flatnonzero(use)
    col[usable_idx[measured]] = rng.poisson(1, int(measured.sum()))
    col[usable_idx[hidden]] = SENTINEL_BASE + np.arange(int(hidden.sum()))  # unique, never measured
    counts = sp.hstack([base.counts, sp.csr_matrix(col[:, None])]).tocsr()
    return Slide(
        counts=counts,
        genes=np.append(base.genes, "Sentinel"),
        barcodes=base.barcodes,
        array_row=base.array_row,
        array_col=base.array_col,
        in_tissue=base.in_tissue,
        pixel_xy=base.pixel_xy,
        images=base.images,
        scalefactors=base.scalefactors,
        spot_diameter_px=base.spot_diameter_px,
        library_id="sentinel",
    )


def _reachable(root, limit: int = 100_000) -> list:
    """Every object reachable from ``root`` through references (attributes, containers, array
    bases), without entering modules, classes or functions (which reach the whole process)."""
    seen: set[int] = set()
    out = []
    stack = [root]
    skip = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType, types.MethodType)
    while stack and len(out) < limit:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        out.append(obj)
        if isinstance(obj, np.ndarray):
            if obj.base is not None:
                stack.append(obj.base)
            continue
        stack.extend(gc.get_referents(obj))
        if hasattr(obj, "__dict__"):
            stack.append(vars(obj))
    return out


def _arrays(root) -> list[np.ndarray]:
    found = []
    for o in _reachable(root):
        if isinstance(o, np.ndarray):
            found.append(o)
        elif isinstance(o, memoryview | bytes | bytearray) and len(o) > 0:
            found.append(np.frombuffer(o, dtype=np.uint8))
    return found


# ---------------------------------------------------------------------- protocol
def test_holdout_masks_genes_and_targets(synthetic_slide):
    task, truth, meta = build_holdout(synthetic_slide, n_genes=5, seed=3, budget_s=7.0)
    use = synthetic_slide.usable()
    rows, cols = synthetic_slide.array_row[use], synthetic_slide.array_col[use]
    meas = measured_mask(rows, cols, "hex")
    assert meta["spots"] == use.sum() and meta["measured"] == meas.sum() == len(task.measured_rows)
    assert meta["hidden"] == (~meas).sum() == len(task.target_rows) == truth.shape[0]
    assert np.array_equal(task.measured_rows, rows[meas]) and np.array_equal(task.target_cols, cols[~meas])
    # 1/4 lattice: measured rows even and (row + col) % 4 == 0
    assert np.all(task.measured_rows % 2 == 0) and np.all((task.measured_rows + task.measured_cols) % 4 == 0)
    assert list(task.genes) == synthetic_slide.top_variable_genes(5, spots=meas)
    lognorm = synthetic_slide.lognorm(list(task.genes))
    assert np.array_equal(task.measured_values, lognorm[meas])
    assert np.array_equal(truth, lognorm[~meas])
    assert task.seed == 3 and task.budget_s == 7.0
    assert task.histology is not None and "hires" in task.histology.images
    # all-gene matrix: measured spots only, genes detected in >= 10 % of them
    allg = task.measured_all_genes
    assert allg.shape[0] == meas.sum()
    assert np.all(np.asarray((allg > 0).mean(axis=0)).ravel() >= 0.10)


@pytest.mark.parametrize("name", ["st_mouse_olfactory_bulb", "her2st_C2"])
def test_the_four_measured_cosets_partition_a_real_slide(read_shared, name):
    """Phases 1-3 give three more hold-out tasks of the benchmark's geometry from one slide: each usable
    spot is measured in exactly one phase, and every phase's measured spots are a double-pitch
    sub-lattice the S2S method accepts."""
    from napari_s2s.core.methods.s2s import to_lattice

    slide = read_shared(name)
    masks = [holdout_masks(slide, phase)[0] for phase in range(4)]
    assert np.array_equal(np.sum(masks, axis=0), np.ones(int(slide.usable().sum())))
    assert all(0.15 < m.mean() < 0.35 for m in masks)
    task, truth, meta = build_holdout(slide, n_genes=3, phase=2)
    assert meta["phase"] == 2 and meta["measured"] == masks[2].sum() == len(task.measured_rows)
    lr, lc, tr, tc = to_lattice(task)  # raises unless the measured spots are one stride-2 sub-lattice
    assert len(tr) == truth.shape[0]
    with pytest.raises(ValueError, match="phase"):
        holdout_masks(slide, 4)


def test_holdout_refuses_bad_input(synthetic_slide):
    with pytest.raises(SlideError, match="unknown gene"):
        build_holdout(synthetic_slide, genes=["NoSuchGene"])
    tiny = make_synthetic_slide(n_rows=6, n_cols=12, n_noise_genes=1, image=False)
    with pytest.raises(SlideError, match="too few spots"):
        build_holdout(tiny)


def test_task_holds_no_hidden_value():
    """Sentinel counts planted in hidden spots appear nowhere reachable from the task."""
    slide = _sentinel_slide()
    task, truth, _ = build_holdout(slide, genes=["Sentinel", "TumorMarker"])
    hidden_lognorm = np.unique(truth[:, 0].astype(np.float64))
    assert hidden_lognorm.min() > task.measured_values[:, 0].max() + 3  # the sentinel is unmistakable
    raw = np.arange(SENTINEL_BASE, SENTINEL_BASE + truth.shape[0], dtype=np.float64)
    arrays = _arrays(task)
    assert len(arrays) >= 8  # the walk does reach the task's arrays
    for a in arrays:
        if a.dtype.kind != "f" or a.size == 0:
            continue  # values (counts, log-normalised) are floats; ints are coordinates and indices
        v = a.astype(np.float64).ravel()
        assert not np.isin(v, raw).any(), "raw hidden counts reachable from the task"
        idx = np.clip(np.searchsorted(hidden_lognorm, v), 1, len(hidden_lognorm) - 1)
        gap = np.minimum(np.abs(v - hidden_lognorm[idx - 1]), np.abs(v - hidden_lognorm[idx]))
        assert gap.min() > 1e-4, "hidden log-normalised values reachable from the task"
    assert not any(isinstance(o, Slide) for o in _reachable(task))
    for name in ("measured_rows", "measured_cols", "measured_values", "target_rows", "target_cols"):
        assert getattr(task, name).base is None, name  # no view on a larger (full-slide) array


class _Cheat:
    """Searches everything reachable from the task for values that look like the hidden sentinel
    (far above every measured value of the gene); predicts them when found, else the measured max."""

    name = "cheat"

    def predict(self, task: ImputationTask) -> np.ndarray:
        t, g = len(task.target_rows), len(task.genes)
        pred = np.tile(task.measured_values.max(axis=0).astype(np.float64), (t, 1))
        limit = task.measured_values[:, 0].max() + 3
        for a in _arrays(task):
            if a.dtype.kind == "f" and a.ndim >= 1 and a.shape[0] == t:
                col = a.reshape(t, -1)[:, 0].astype(np.float64)
                if col.max() > limit:
                    pred[:, 0] = col
        return pred[:, :g]


def test_a_cheating_method_finds_nothing(temp_methods):
    temp_methods("cheat", _Cheat)
    slide = _sentinel_slide()
    res = run_benchmark([slide], methods=["cheat", "nearest"], genes=["Sentinel", "TumorMarker"])
    cheat = res["slides"][0]["methods"]["cheat"]["per_gene"]["Sentinel"]
    nearest = res["slides"][0]["methods"]["nearest"]["per_gene"]["Sentinel"]
    assert cheat["pcc"] is None  # it found nothing and predicted a constant
    assert cheat["rmse"] > 3  # nowhere near the hidden values
    assert nearest["pcc"] is None or nearest["pcc"] < 0.5

    # control: the same cheat does find hidden values when a task leaks them
    task, truth, meta = build_holdout(slide, genes=["Sentinel", "TumorMarker"])
    leaky = ImputationTask(**{**task.__dict__, "extra": {"oops": truth.copy()}})
    sc = score(task, truth, _Cheat().predict(leaky), meta)
    assert sc["Sentinel"]["pcc"] == pytest.approx(1.0)


class _Recorder:
    """Records the task it gets, and scribbles over its arrays (which must not affect others)."""

    name = "recorder"
    seen: list = []

    def predict(self, task):
        _Recorder.seen.append(
            (task.measured_values.copy(), task.measured_rows.copy(), task.target_rows.copy(), task.genes)
        )
        pred = np.zeros((len(task.target_rows), len(task.genes)))
        task.measured_values[:] = 1e6  # a careless method mutating its input
        task.target_rows[:] = 0
        return pred


class _Broken:
    name = "broken"

    def predict(self, task):
        raise RuntimeError("boom")


def test_same_task_for_every_method_and_failures_isolated(temp_methods, synthetic_slide):
    _Recorder.seen = []
    temp_methods("rec_a", _Recorder)
    temp_methods("rec_b", _Recorder)
    temp_methods("broken", _Broken)
    with pytest.warns(UserWarning, match="broken failed"):
        res = run_benchmark([synthetic_slide], methods=["rec_a", "broken", "rec_b", "nearest"], n_genes=4)
    (a, b) = _Recorder.seen
    for x, y in zip(a, b):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    m = res["slides"][0]["methods"]
    assert m["broken"] == {"error": "RuntimeError: boom"}
    assert m["nearest"]["pcc_median"] is not None  # unaffected by the scribbling


def test_perfect_prediction_scores_perfectly(synthetic_slide):
    task, truth, meta = build_holdout(synthetic_slide, n_genes=3)
    sc = score(task, truth, truth, meta)
    for v in sc.values():
        assert v["pcc"] == pytest.approx(1.0) and v["rmse"] == 0 and v["mae"] == 0
        assert v["ssim"] == pytest.approx(1.0)


def _check_schema(res: dict, genes_per_slide: int) -> None:
    assert isinstance(res["version"], str) and isinstance(res["seed"], int)
    for s in res["slides"]:
        for key, typ in (("name", str), ("spots", int), ("measured", int), ("genes", list), ("methods", dict)):
            assert isinstance(s[key], typ), key
        assert "path" in s and len(s["genes"]) == genes_per_slide
        for name, m in s["methods"].items():
            for key in ("pcc_median", "rmse_median", "mae_median", "ssim_median"):
                assert m[key] is None or isinstance(m[key], float), (name, key)
            assert isinstance(m["seconds"], float) and m["seconds"] >= 0
            assert set(m["per_gene"]) == set(s["genes"])
            for rec in m["per_gene"].values():
                assert set(rec) == {"pcc", "rmse", "mae", "ssim"}
                assert all(v is None or isinstance(v, float) for v in rec.values())
    json.dumps(res, allow_nan=False)  # strict JSON: null, never NaN


def test_run_benchmark_schema_and_skips(data_dir, tmp_path):
    bad = tmp_path / "broken.h5ad"
    bad.write_bytes(b"not an h5 file")
    paths = [data_dir / "README.md", data_dir / "her2st_C2.h5ad", bad, data_dir / "st_breast_cancer_layer2.h5ad"]
    with pytest.warns(UserWarning) as rec:
        res = run_benchmark(paths, methods=["nearest", "linear", "gaussian"], n_genes=5)
    assert [s["name"] for s in res["slides"]] == ["her2st_C2", "st_breast_cancer_layer2"]
    reasons = {k["path"]: k["reason"] for k in res["skipped"]}
    assert reasons[str(data_dir / "README.md")] == "not a slide"
    assert "broken.h5ad" in reasons[str(bad)]
    assert any("README" in str(w.message) for w in rec)
    _check_schema(res, 5)
    assert res["slides"][0]["measured"] == 46 and res["slides"][0]["lattice"] == "square"
    table = markdown_table(res)
    assert table.count("| her2st_C2 |") == 3 and "Mean over slides" in table
    with pytest.raises(ValueError, match="unknown method"):
        run_benchmark(paths[1:2], methods=["no_such_method"])


def test_histology_methods_only_where_there_is_an_image(temp_methods, read_shared):
    class NeedsImage:
        name = "needs_image"
        needs_histology = True

        def predict(self, task):
            assert task.histology is not None
            return np.zeros((len(task.target_rows), len(task.genes)))

    NeedsImage.needs_histology = True
    temp_methods("needs_image", NeedsImage)
    res = run_benchmark(
        [read_shared("st_breast_cancer_layer2"), read_shared("her2st_C2")], methods=["needs_image"], n_genes=2
    )
    no_img, img = res["slides"]
    assert no_img["methods"] == {} and no_img["not_applicable"] == ["needs_image"]
    assert "needs_image" in img["methods"]


def test_deterministic_with_seed(synthetic_slide):
    opts = {"dist": {"epochs": 2, "width": 8, "threads": 1}}
    kw = dict(methods=["pca_gaussian", "dist"], n_genes=4, method_options=opts)
    a = run_benchmark([synthetic_slide], seed=1, **kw)
    b = run_benchmark([synthetic_slide], seed=1, **kw)
    c = run_benchmark([synthetic_slide], seed=2, **kw)
    for name in ("pca_gaussian", "dist"):
        pa = a["slides"][0]["methods"][name]["per_gene"]
        assert pa == b["slides"][0]["methods"][name]["per_gene"], name
    assert a["slides"][0]["methods"]["dist"]["per_gene"] != c["slides"][0]["methods"]["dist"]["per_gene"]


def test_default_methods_leave_out_ablations(temp_methods):
    class Plain:
        name = "plain_tmp"

    class Ablated:
        name = "ablated_tmp"
        ablation = True

    temp_methods("plain_tmp", Plain)
    temp_methods("ablated_tmp", Ablated)
    names = default_methods()
    assert "plain_tmp" in names and "ablated_tmp" not in names
    assert names[:6] == ["nearest", "linear", "cubic", "gaussian", "kriging", "pca_gaussian"]


def test_histology_images_are_read_only_views(synthetic_slide):
    task, _, _ = build_holdout(synthetic_slide, n_genes=2)
    img = task.histology.images["hires"]
    assert not img.flags.writeable
    with pytest.raises(ValueError):
        img[0, 0, 0] = 1
    assert synthetic_slide.images["hires"].flags.writeable  # the slide itself is left as it was
