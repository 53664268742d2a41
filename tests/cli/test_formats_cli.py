"""The command line on Xenium, Visium HD and SpatialData inputs: ``info``, ``impute`` (to .h5ad and to
SpatialData .zarr), bad input (one line, exit 2, nothing written) and the warnings users see."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from conftest import writable_copy

from napari_s2s.cli import main, user_facing_warnings
from napari_s2s.core.data.lattice import dense_positions

FAST = ["--max-steps", "2", "--threads", "1", "--no-natural", "--quiet", "--device", "cpu"]


def _info(capsys, *argv) -> dict:
    assert main(["info", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_on_each_format(formats_dir, capsys):
    x = _info(capsys, formats_dir / "xenium_breast_small", "--bin-um", "5")
    assert x["technology"] == "xenium" and x["lattice"] == "square" and x["pitch_um"] == 5.0
    assert x["um_per_px"] == pytest.approx(0.2125) and x["genes"] == 4 and x["counts_from"] == "cells"
    t = _info(capsys, formats_dir / "xenium_mouse_brain_crops" / "sample1", "--bin-um", "2")
    assert t["counts_from"] == "transcripts" and t["grid_shape"] == [10, 10]
    c = _info(
        capsys, formats_dir / "xenium_mouse_brain_crops" / "sample1", "--bin-um", "2", "--bin-from", "transcripts"
    )
    assert c == t
    assert main(["info", str(formats_dir / "visium_hd_mouse_brain_layout"), "--json"]) == 0
    cap = capsys.readouterr()
    h = json.loads(cap.out)
    assert h["technology"] == "visium_hd" and h["pitch_um"] == 2.0 and h["spots_total"] == 10
    # no 8 um folder (10x's recommended size, the default): the one there is opened, and that is said
    assert "no 8 um bins here; opening the 2 um ones" in cap.err
    assert h["images"] == {"lowres": [600, 473]}
    z = _info(capsys, formats_dir / "xenium_breast_crop.zarr", "--bin-um", "10")
    assert z["technology"] == "xenium" and z["genes"] == 313 and z["bin_um"] == 10.0
    assert z["counts_from"] == "transcripts" and "image" in z["images"]


@pytest.mark.parametrize("bad", ["0", "-8", "nan", "abc"])
def test_bin_size_not_positive(formats_dir, tmp_path, capsys, bad):
    out = tmp_path / "o.h5ad"
    assert main(["impute", str(formats_dir / "xenium_breast_small"), "--out", str(out), f"--bin-um={bad}"] + FAST) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bin size" in err and "xenium_breast_small" in err
    assert not out.exists()


def test_too_few_bins_to_train_points_to_the_bin_size(formats_dir, tmp_path, capsys):
    """A Xenium section too small for 50 um bins: the one-line error says a smaller --bin-um makes more
    spots (formats without bins keep the plain message: test_bad_input_cli)."""
    _bad(
        capsys,
        tmp_path,
        formats_dir / "xenium_breast_small",
        "too few spots to train (1 in tissue with at least one count; need 16); these are 50 um bins: "
        "a smaller --bin-um makes more of them",
    )


def _bad(capsys, tmp_path, path, expect: str, *extra):
    out = tmp_path / "never.h5ad"
    rc = main(["impute", str(path), "--out", str(out), *extra] + FAST)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("napari-s2s: error: ") and "Traceback" not in err
    assert expect in err, err
    assert not out.exists() and not list(tmp_path.glob(".never*"))


def test_bad_xenium_folders(formats_dir, tmp_path, capsys):
    d = writable_copy(formats_dir / "xenium_breast_small", tmp_path / "xen")
    (d / "experiment.xenium").unlink()
    _bad(capsys, tmp_path, d, "experiment.xenium: missing")
    d = writable_copy(formats_dir / "xenium_breast_small", tmp_path / "xen2")
    (d / "cells.parquet").write_bytes(b"PAR1 nope")
    _bad(capsys, tmp_path, d, "cells.parquet: unreadable parquet")
    d = writable_copy(formats_dir / "xenium_mouse_brain_crops" / "sample1", tmp_path / "crop")
    (d / "transcripts.csv").unlink()
    _bad(capsys, tmp_path, d, "transcripts.parquet: missing")
    # a SpatialData crop whose table lost its gene names: its cells cannot be binned, its transcripts can
    crop = formats_dir / "xenium_breast_crop.zarr"
    _bad(capsys, tmp_path, crop, "gene names were lost", "--bin-from", "cells")
    _bad(capsys, tmp_path, crop, "bin the transcripts instead (--bin-from transcripts)", "--bin-from", "cells")


def test_bad_visium_hd_folders(formats_dir, tmp_path, capsys):
    bins = "binned_outputs/square_002um"
    d = writable_copy(formats_dir / "visium_hd_mouse_brain_layout", tmp_path / "hd")
    (d / bins / "spatial/tissue_positions.parquet").unlink()
    _bad(capsys, tmp_path, d, "tissue_positions.parquet: missing")
    d = writable_copy(formats_dir / "visium_hd_mouse_brain_layout", tmp_path / "hd2")
    (d / bins / "filtered_feature_bc_matrix.h5").write_bytes(b"\x89HDF\r\n garbage")
    _bad(capsys, tmp_path, d, "filtered_feature_bc_matrix.h5: not a readable 10x HDF5")
    _bad(capsys, tmp_path, formats_dir / "visium_hd_mouse_brain_layout", "no square_016um", "--bin-um", "16")


def test_spatialdata_without_a_table(formats_dir, tmp_path, capsys):
    sd = pytest.importorskip("spatialdata")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src = sd.read_zarr(formats_dir / "xenium_breast_crop.zarr")
        p = tmp_path / "shapes_only.zarr"
        sd.SpatialData(shapes={"cell_circles": src.shapes["cell_circles"]}).write(p)
    _bad(capsys, tmp_path, p, "has no table")


def test_zarr_output_without_spatialdata(formats_dir, tmp_path, capsys, monkeypatch):
    from napari_s2s.core.data import spatialdata_zarr
    from napari_s2s.core.errors import SlideError

    def missing(path=None):
        raise SlideError(path, spatialdata_zarr.INSTALL_HINT)

    monkeypatch.setattr(spatialdata_zarr, "import_spatialdata", missing)
    out = tmp_path / "r.zarr"
    assert main(["impute", str(formats_dir / "xenium_breast_small"), "--out", str(out)] + FAST) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "napari-s2s[spatialdata]"' in err
    assert not out.exists()


def test_impute_xenium_crop_to_spatialdata_and_back(formats_dir, tmp_path):
    """Imputed maps written as SpatialData beside the measured values, in the input's coordinate
    system; the store reopens as a napari-s2s result."""
    sd = pytest.importorskip("spatialdata")
    from spatialdata.transformations import get_transformation

    from napari_s2s.core.data.io import read_slide

    src = formats_dir / "xenium_breast_crop.zarr"
    out = tmp_path / "imputed.zarr"
    assert main(["impute", str(src), "--out", str(out), "--bin-um", "5", "--genes", "top:2", "--seed", "0"] + FAST) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sd.read_zarr(out)
        inp = sd.read_zarr(src)
    assert set(res.tables) == {"s2s_imputed", "s2s_measured"} and "s2s_image" in res.images
    dense, meas = res.tables["s2s_imputed"], res.tables["s2s_measured"]
    slide = read_slide(src, bin_um=5)
    genes = slide.top_variable_genes(2)
    assert list(dense.var_names) == genes == list(meas.var_names)
    use = slide.usable()
    n_dense = len(dense_positions(slide.array_row[use], slide.array_col[use], slide.kind)[0])
    assert meas.n_obs == int(use.sum()) and dense.n_obs == n_dense > 4 * meas.n_obs
    # measured values: bitwise the slide's log-normalised values, at the dense grid's measured positions
    flag = dense.obs["s2s_measured"].to_numpy(bool)
    assert np.array_equal(np.asarray(dense.X)[flag].sum(0), slide.lognorm(genes).sum(0))
    assert np.array_equal(np.asarray(meas.X), slide.lognorm(genes))
    assert np.array_equal(
        np.asarray(meas.layers["counts"].todense()), slide.counts[:, slide.gene_indices(genes)].toarray()
    )
    # same coordinate system as the input: the measured bins' circles sit over the input's cells
    cells = inp.shapes["cell_boundaries"]
    a = get_transformation(cells, "global").to_affine_matrix(("x", "y"), ("x", "y"))
    cxy = np.stack([cells.geometry.centroid.x, cells.geometry.centroid.y], 1) @ a[:2, :2].T + a[:2, 2]
    spots = res.shapes["s2s_measured_spots"]
    sxy = np.stack([spots.geometry.x, spots.geometry.y], 1)
    assert "global" in get_transformation(spots, get_all=True)
    lo, hi = cxy.min(0), cxy.max(0)
    bin_px = 5 / 0.2125
    assert (sxy.min(0) > lo - bin_px).all() and (sxy.max(0) < hi + bin_px).all()
    d = np.hypot(*(sxy[:, None, :] - sxy[None, :, :]).T)
    assert np.min(d[d > 0]) == pytest.approx(bin_px, rel=1e-6)  # neighbouring bins: one 5 um bin apart
    # reopens as a result, on the input's frame
    back = read_slide(out)
    assert back.is_imputed_result and back.result_genes() == genes and back.geometry.pitch_um == 2.5
    assert back.metadata["spatialdata"]["origin"] == slide.metadata["spatialdata"]["origin"]


def test_impute_generated_visium_hd_to_h5ad(tmp_path):
    """A modest generated Visium HD slide (its real layout) through ``impute``: the default output stays .h5ad."""
    import anndata as ad

    from napari_s2s.core.data.io import read_slide
    from napari_s2s.core.data.synthetic_hd import write_visium_hd

    run = tmp_path / "run"
    write_visium_hd(run, n_bins=3_000, bin_um=16, n_genes=500, density=0.03, area_um=1_200, hires_side=600)
    out = tmp_path / "r.h5ad"
    assert main(["impute", str(run), "--bin-um", "16", "--out", str(out), "--genes", "top:2"] + FAST) == 0
    res = ad.read_h5ad(out)
    slide = read_slide(run, bin_um=16)
    use = slide.usable()
    n_dense = len(dense_positions(slide.array_row[use], slide.array_col[use], slide.kind)[0])
    assert res.n_obs == n_dense > 4 * 3_000 and res.uns["s2s"]["pitch_um"] == 16.0


def test_third_party_deprecations_are_not_shown(capsys):
    with warnings.catch_warnings():
        user_facing_warnings()
        warnings.warn_explicit(
            "Using extra keyword arguments on `Field` is deprecated",
            DeprecationWarning,
            "pydantic/fields.py",
            1,
            module="pydantic.fields",
        )
        warnings.warn_explicit("old napari thing", FutureWarning, "napari/x.py", 1, module="napari.components")
        with pytest.warns(DeprecationWarning, match="ours"):
            warnings.warn_explicit(
                "ours is deprecated", DeprecationWarning, "napari_s2s/cli/x.py", 1, module="napari_s2s.cli.x"
            )
        with pytest.warns(UserWarning, match="a real problem"):
            warnings.warn_explicit("a real problem", UserWarning, "anndata/x.py", 1, module="anndata.x")


def test_cli_shows_our_warnings_and_hides_deprecation_noise():
    """As a user sees it (a fresh process, no pytest warning capture)."""
    import subprocess
    import sys

    code = """
import warnings, sys
import napari_s2s.cli.info as info
real = info.slide_info
def noisy(slide):
    warnings.warn_explicit("pydantic noise", DeprecationWarning, "pydantic/main.py", 3, module="pydantic.main")
    warnings.warn("napari-s2s has something to say", UserWarning)
    return real(slide)
info.slide_info = noisy
from napari_s2s.cli import main
sys.exit(main(["info", "--sample"]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "pydantic noise" not in out.stderr
    assert "napari-s2s: warning: napari-s2s has something to say" in out.stderr


def test_benchmark_on_a_binned_spatialdata_crop(formats_dir, tmp_path, capsys):
    out = tmp_path / "b.json"
    rc = main(
        [
            "benchmark",
            str(formats_dir / "xenium_breast_crop.zarr"),
            str(formats_dir / "xenium_breast_small"),
            "--bin-um",
            "5",
            "--methods",
            "linear,gaussian",
            "--genes",
            "top:3",
            "--json",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    rec = json.loads(out.read_text())
    (slide,) = rec["slides"]  # the 6-cell folder has too few bins to hold any out: reported, skipped
    assert slide["lattice"] == "square" and slide["spots"] > 1000 and len(slide["genes"]) == 3
    assert np.isfinite(slide["methods"]["gaussian"]["pcc_median"])
