"""``napari-s2s impute`` end to end on a real shared slide, and its bad-input paths."""

from __future__ import annotations

import hashlib

import anndata as ad
import numpy as np
import pytest
import torch
from conftest import slide_path

from napari_s2s.cli import main
from napari_s2s.core.data.io import read_slide
from napari_s2s.core.data.lattice import dense_positions

FAST = ["--max-steps", "3", "--threads", "1", "--no-natural", "--quiet"]


def _sha(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_impute_real_slide_end_to_end(tmp_path, data_dir):
    src = slide_path(data_dir, "her2st_C2")
    before = _sha(src)
    out = tmp_path / "imputed.h5ad"
    model = tmp_path / "model.pt"
    rc = main(
        [
            "impute",
            str(src),
            "--out",
            str(out),
            "--genes",
            "top:3",
            "--seed",
            "1",
            "--device",
            "cpu",
            "--save-model",
            str(model),
        ]
        + FAST
    )
    assert rc == 0
    assert _sha(src) == before  # input untouched
    res = ad.read_h5ad(out)
    slide = read_slide(src)
    genes = slide.top_variable_genes(3)
    assert list(res.var_names) == genes
    assert res.X.dtype == np.float32
    meas = res.obs["s2s_measured"].to_numpy().astype(bool)
    use = slide.usable()
    n_dense = len(dense_positions(slide.array_row[use], slide.array_col[use], slide.kind)[0])
    assert meas.sum() == use.sum() and res.n_obs == n_dense > 4 * meas.sum()  # square x2 grid, 3x3 per spot
    R = res.obs["array_row"].to_numpy()
    C = res.obs["array_col"].to_numpy()
    assert np.all(R[meas] % 2 == 0) and np.all(C[meas] % 2 == 0)
    # measured positions: bitwise the input's log-normalised values
    use = slide.usable()
    key = {(2 * int(r), 2 * int(c)): i for i, (r, c) in enumerate(zip(slide.array_row[use], slide.array_col[use]))}
    idx = np.array([key[(int(r), int(c))] for r, c in zip(R[meas], C[meas])])
    assert np.array_equal(np.asarray(res.X)[meas], slide.lognorm(genes)[idx])
    # the network's own output everywhere, as a layer: equal to X between the measured spots
    model_out = np.asarray(res.layers["s2s_model"])
    assert model_out.shape == res.shape and np.array_equal(model_out[~meas], np.asarray(res.X)[~meas])
    # pixel positions on the half-pitch grid, image metadata copied, provenance
    assert res.obsm["spatial"].shape == (res.n_obs, 2)
    lib = next(iter(res.uns["spatial"]))
    assert "hires" in res.uns["spatial"][lib]["images"]
    prov = res.uns["s2s"]
    for k in ("version", "config", "genes", "seed", "device", "seconds", "source"):
        assert k in prov
    assert int(prov["seed"]) == 1 and prov["device"] == "cpu" and str(src) in str(prov["source"])
    assert prov["config"]["preset"] == "fast"
    # the result reopens as a slide (over the same image) on the dense grid
    back = read_slide(out)
    assert back.kind == "square" and back.images
    assert model.is_file() and torch.load(model, weights_only=True)["genes"] == genes


def test_an_existing_result_is_replaced_only_with_force(tmp_path, data_dir, capsys):
    """A typo in --out must not cost a result (or a whole SpatialData store): an existing output is
    refused, in one line naming --force, before any work; --force replaces it."""
    src = slide_path(data_dir, "st_breast_cancer_layer2")
    out, model = tmp_path / "r.h5ad", tmp_path / "m.pt"
    assert main(["impute", str(src), "--out", str(out), "--genes", "top:2"] + FAST) == 0
    before = _sha(out)
    capsys.readouterr()
    for extra in ([], ["--save-model", str(out.with_name("other.pt"))]):
        assert main(["impute", str(src), "--out", str(out), "--genes", "top:3"] + extra + FAST) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--out exists" in err[0] and "--force" in err[0]
    assert _sha(out) == before and not out.with_name("other.pt").exists()
    model.write_bytes(b"an older model")
    assert main(["impute", str(src), "--out", str(tmp_path / "new.h5ad"), "--save-model", str(model)] + FAST) == 2
    assert "--save-model exists" in capsys.readouterr().err and not (tmp_path / "new.h5ad").exists()
    assert main(["impute", str(src), "--out", str(out), "--genes", "top:3", "--force"] + FAST) == 0
    assert ad.read_h5ad(out).n_vars == 3


def test_impute_bad_input(tmp_path, data_dir, capsys):
    src = slide_path(data_dir, "her2st_C2")
    # never overwrite the input
    assert main(["impute", str(src), "--out", str(src)] + FAST) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    # unknown gene: one line with close matches
    assert main(["impute", str(src), "--out", str(tmp_path / "o.h5ad"), "--genes", "ERBB2x"] + FAST) == 2
    err = capsys.readouterr().err
    assert "unknown gene" in err and "ERBB2" in err and err.count("\n") == 1
    # a README is not a slide
    readme = data_dir / "README.md"
    assert main(["impute", str(readme), "--out", str(tmp_path / "o.h5ad")] + FAST) == 2
    # cuda asked on a machine without it
    if not torch.cuda.is_available():
        assert main(["impute", str(src), "--out", str(tmp_path / "o.h5ad"), "--device", "cuda"] + FAST) == 2
        assert "cuda" in capsys.readouterr().err.lower()
    assert not (tmp_path / "o.h5ad").exists()


def test_impute_with_histology_and_reopen(tmp_path, data_dir):
    src = slide_path(data_dir, "her2st_C2")
    out = tmp_path / "he.h5ad"
    rc = main(
        ["impute", str(src), "--out", str(out), "--genes", "top:3", "--device", "cpu", "--histology", "on"]
        + ["--aux-genes", "5"]
        + FAST
    )
    assert rc == 0
    res = ad.read_h5ad(out)
    assert bool(res.uns["s2s"]["histology"]) is True and res.uns["s2s"]["config"]["histology"] == "on"
    assert res.uns["s2s"]["config"]["aux_genes"] == 5 and list(res.var_names) == read_slide(src).top_variable_genes(3)
    aux = list(res.uns["s2s"]["aux_genes"])  # the extra training genes, by name: provenance, never imputed
    assert len(aux) == 5 and not set(aux) & set(res.var_names) and set(aux) <= set(read_slide(src).genes)
    slide = read_slide(src)
    genes = list(res.var_names)
    meas = res.obs["s2s_measured"].to_numpy().astype(bool)
    use = slide.usable()
    key = {(2 * int(r), 2 * int(c)): i for i, (r, c) in enumerate(zip(slide.array_row[use], slide.array_col[use]))}
    R, C = res.obs["array_row"].to_numpy(), res.obs["array_col"].to_numpy()
    idx = np.array([key[(int(r), int(c))] for r, c in zip(R[meas], C[meas])])
    assert np.array_equal(np.asarray(res.X)[meas], slide.lognorm(genes)[idx])  # still exact with H&E guidance
    assert np.all(np.asarray(res.X) >= 0)
    # reopened: the values are taken as they are (no second normalisation), at half the source pitch
    back = read_slide(out)
    assert back.values_are_lognorm
    assert np.allclose(back.lognorm(genes), np.asarray(res.X)[back.usable()])
    assert back.geometry.pitch_um == slide.geometry.pitch_um / 2
    assert (
        back.geometry.um_per_px == np.float64(slide.geometry.um_per_px).round(6)
        or abs(back.geometry.um_per_px - slide.geometry.um_per_px) < 0.02 * slide.geometry.um_per_px
    )


def test_impute_histology_on_without_image_is_bad_input(tmp_path, data_dir, capsys):
    src = slide_path(data_dir, "st_breast_cancer_layer2")
    rc = main(
        [
            "impute",
            str(src),
            "--out",
            str(tmp_path / "x.h5ad"),
            "--genes",
            "top:2",
            "--device",
            "cpu",
            "--histology",
            "on",
        ]
        + FAST
    )
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "H&E image" in err[0]
    assert not (tmp_path / "x.h5ad").exists()


def test_impute_says_how_the_result_was_made(tmp_path, data_dir):
    """Provenance and the last progress line: the base predictor, the networks' weight, the verdict;
    --tta asks for every network averaged over the lattice's flips; -o is --out."""
    src = slide_path(data_dir, "her2st_C2")
    out = tmp_path / "v.h5ad"
    rc = main(["impute", str(src), "-o", str(out), "--genes", "top:2", "--device", "cpu", "--tta"] + FAST)
    assert rc == 0
    prov = ad.read_h5ad(out).uns["s2s"]
    assert prov["config"]["tta"] and prov["config"]["histology"] == "auto"
    assert str(prov["base"]).startswith(("kriging", "stack of"))
    members = [str(m) for m in prov["base_members"]]  # every member of the base predictor, with its weight
    assert members and abs(sum(float(m.split()[0]) for m in members) - 1.0) < 0.01
    assert all(" kriging" in m for m in members) and (len(members) > 1) == str(prov["base"]).startswith("stack of")
    assert 0.0 <= float(prov["alpha"]) <= 1.0
    # the weight is the supported one less two of its standard errors (the default margin), in [0, 1]
    a_ls, a_se = (float(v) for v in prov["alpha_supported"])
    assert float(prov["alpha"]) == pytest.approx(min(max(a_ls - prov["config"]["blend_margin"] * a_se, 0.0), 1.0))
    # checkpoint selection (on by default): the step of each network's kept weights, within its steps
    best = [int(s) for s in prov["best_steps"]]
    assert prov["config"]["checkpoints"] > 0 and len(best) == prov["config"]["folds"]
    assert all(0 <= s <= -(-int(prov["steps"]) // len(best)) for s in best)  # round-robin: ceil(steps / networks)
    assert "base predictor" in str(prov["verdict"])


def test_a_gene_with_no_count_is_zeros_and_said(tmp_path, data_dir, capsys):
    """CHD5 is a gene of the HER2ST panel that no measured spot of C2 detected: its map is zeros (not
    NaN, not a pattern made of noise), and a warning says so before training."""
    src = slide_path(data_dir, "her2st_C2")
    out = tmp_path / "r.h5ad"
    assert main(["impute", str(src), "--out", str(out), "--genes", "CHD5,ERBB2"] + FAST) == 0
    err = capsys.readouterr().err
    assert "warning: --genes: CHD5: no count at any measured spot of her2st_C2; imputed as zeros" in err
    res = ad.read_h5ad(out)
    assert np.all(res[:, "CHD5"].X == 0) and np.any(res[:, "ERBB2"].X > 0)
