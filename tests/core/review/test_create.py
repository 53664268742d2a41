"""Making sessions on a real slide: two methods now, two result files, a hold-out run; their maps;
bad input named in one line before anything is computed or written."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
from conftest import REVIEW_GENES

from napari_s2s.core.errors import SessionError, SlideError
from napari_s2s.core.review.create import create_session
from napari_s2s.core.review.maps import load_maps
from napari_s2s.core.review.session import ReviewSession


def _read(path):
    from napari_s2s.core.data.io import read_slide

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_slide(path)


def test_compare_session_maps_are_the_results(review_results, tmp_path):
    s = create_session(
        tmp_path / "s.json",
        review_results["slide"],
        compare=[review_results["gaussian"], review_results["he_gaussian"]],
        genes="SCD,ERBB2",
    )
    assert s.genes == ["SCD", "ERBB2"] and s.arm_names == ["gaussian", "he_gaussian"]
    maps = load_maps(ReviewSession.load(s.path))
    assert maps.slide.name == "her2st_C2" and maps.he() is not None
    for k, key in enumerate(("gaussian", "he_gaussian")):
        res = _read(review_results[key])
        want, affine = res.grid(["SCD"]).display()
        got, got_affine = maps.image(k, "SCD")
        np.testing.assert_array_equal(got, want[0])
        np.testing.assert_allclose(got_affine, affine)
    lo, hi = maps.limits("SCD")
    both = np.concatenate([maps.image(k, "SCD")[0].ravel() for k in (0, 1)])
    assert lo == 0 and hi == pytest.approx(np.percentile(both[np.isfinite(both) & (both > 0)], 99))
    # the dense maps sit on the measured map: same world box up to half a dense pitch
    from napari_s2s.core.review.render import world_bounds

    dense = np.array(world_bounds(*maps.image(0, "SCD")))
    measured = np.array(world_bounds(*maps.image("measured", "SCD")))
    pitch = maps.slide.geometry.pitch_um
    assert np.all(np.abs(dense - measured) <= 0.5 * pitch + 1e-6)


def test_methods_session_computes_and_stores_maps(data_dir, tmp_path):
    from conftest import slide_path

    slide = slide_path(data_dir, "her2st_C2")
    s = create_session(tmp_path / "m.json", slide, methods=["s2s", "gaussian"], genes="ERBB2,SCD", budget_s=2, seed=3)
    assert [a.file["path"] for a in s.arms] == ["m_maps/s2s.h5ad", "m_maps/gaussian.h5ad"]
    for arm in s.arms:
        res = _read(s.arm_path(arm))
        assert res.is_imputed_result and res.metadata["s2s"]["method"] == arm.name
        # measured values survive exactly
        src = _read(slide)
        meas = res.result_measured()
        assert meas.sum() == src.usable().sum()
        np.testing.assert_array_equal(np.sort(res.lognorm(["ERBB2"])[meas, 0]), np.sort(src.lognorm(["ERBB2"])[:, 0]))
    maps = load_maps(ReviewSession.load(s.path))
    a, b = maps.image(0, "ERBB2")[0], maps.image(1, "ERBB2")[0]
    assert (
        a.shape == b.shape
        and np.isfinite(a).sum() == np.isfinite(b).sum()
        and not np.allclose(np.nan_to_num(a), np.nan_to_num(b))
    )


def test_holdout_session_against_the_measured_values(data_dir, tmp_path):
    from conftest import slide_path

    slide = slide_path(data_dir, "her2st_C2")
    s = create_session(tmp_path / "h.json", slide, holdout=["gaussian"], genes="top:3")
    assert s.kind == "holdout" and s.arm_names == ["measured", "gaussian"] and len(s.genes) == 3
    h = s.holdout
    assert h["measured"] + h["hidden"] == int(_read(slide).usable().sum())
    assert set(h["metrics"]["gaussian"]) == set(s.genes)
    assert all(-1 <= m["pcc"] <= 1 and m["rmse"] > 0 for m in h["metrics"]["gaussian"].values())
    maps = load_maps(ReviewSession.load(s.path))
    g = s.genes[0]
    truth, pred = maps.image(0, g)[0], maps.image(1, g)[0]
    np.testing.assert_array_equal(truth, maps.image("measured", g)[0])
    ok = np.isfinite(truth)
    assert np.array_equal(ok, np.isfinite(pred))
    same = ok & (truth == pred)
    # the 1/4 sub-lattice given to the method keeps its measured values; the hidden 3/4 are predictions
    assert 0.15 < same.sum() / ok.sum() < 0.4


def test_bad_input_is_named_and_nothing_is_written(review_results, data_dir, tmp_path):
    from conftest import slide_path

    slide = review_results["slide"]
    pair = [review_results["gaussian"], review_results["he_gaussian"]]
    out = tmp_path / "s.json"
    with pytest.raises(SessionError) as e:  # genes missing from a result
        create_session(out, slide, compare=pair, genes="ERBB2,GRB7")
    assert str(pair[0]) in str(e.value) and "GRB7" in str(e.value) and "missing" in str(e.value)
    with pytest.raises(SessionError, match="not of her2st_B4"):  # results of another slide
        create_session(out, slide_path(data_dir, "her2st_B4"), compare=pair)
    with pytest.raises(SessionError, match="not a napari-s2s result"):  # a slide given as a result
        create_session(out, slide, compare=[pair[0], slide])
    with pytest.raises(SessionError, match="no such result file"):
        create_session(out, slide, compare=[pair[0], tmp_path / "gone.h5ad"])
    with pytest.raises(SessionError, match="unknown method"):
        create_session(out, slide, methods=["s2s", "krige"])
    with pytest.raises(SessionError, match="needs an H&E image"):
        create_session(out, slide_path(data_dir, "st_breast_cancer_layer2"), methods=["gaussian", "he_gaussian"])
    with pytest.raises(SlideError, match="unknown gene"):
        create_session(out, slide, methods=["nearest", "gaussian"], genes="ERBB2,NOTAGENE")
    with pytest.raises(SlideError, match="cannot impute the dense grid"):  # fails after the first method ran
        create_session(out, slide, methods=["gaussian", "dist"], genes="ERBB2")
    with pytest.raises(SessionError, match="top:N"):
        create_session(out, slide, holdout=["gaussian"], genes="top:many")
    assert not list(tmp_path.iterdir())  # no session, no maps folder


def test_a_result_moved_after_the_session_was_made(review_results, tmp_path):
    a = shutil.copy(review_results["gaussian"], tmp_path / "a.h5ad")
    s = create_session(tmp_path / "s.json", review_results["slide"], compare=[a, review_results["he_gaussian"]])
    (tmp_path / "a.h5ad").rename(tmp_path / "a2.h5ad")
    with pytest.raises(SessionError) as e:
        load_maps(ReviewSession.load(s.path))
    assert "a.h5ad" in str(e.value) and "not found" in str(e.value) and str(s.path) in str(e.value)
    assert set(REVIEW_GENES) >= set(s.genes)


def test_a_session_reads_the_slide_as_its_results_were_read(review_results, data_dir, tmp_path):
    """Reading options (a pitch override, a Xenium bin size) travel with the session: a ``--compare``
    session takes them from its first result's provenance, a ``--methods`` session from the caller,
    and the readers' maps read the slide the same way."""
    import anndata as ad
    from conftest import slide_path

    from napari_s2s.core.review.files import slide_reading

    copies = []
    for key in ("gaussian", "he_gaussian"):
        a = ad.read_h5ad(review_results[key])
        a.uns["s2s"]["reading"] = {"counts_from": "auto", "pitch_um": 150.0}
        a.write_h5ad(tmp_path / f"{key}.h5ad")
        copies.append(tmp_path / f"{key}.h5ad")
    s = create_session(tmp_path / "c.json", compare=copies, genes="SCD")
    assert s.slide["reading"] == {"pitch_um": 150.0}
    maps = load_maps(ReviewSession.load(s.path))
    assert maps.slide.geometry.pitch_um == 150.0
    assert _read(review_results["slide"]).geometry.pitch_um != 150.0

    slide = slide_path(data_dir, "her2st_C2")
    m = create_session(
        tmp_path / "m.json", slide, methods=["gaussian", "nearest"], genes="SCD", reading={"pitch_um": 120}
    )
    assert ReviewSession.load(m.path).slide["reading"] == {"pitch_um": 120.0}
    assert load_maps(ReviewSession.load(m.path)).slide.geometry.pitch_um == 120.0
    plain = create_session(tmp_path / "p.json", slide, methods=["gaussian", "nearest"], genes="SCD")
    assert "reading" not in plain.slide  # the defaults are not written
    assert slide_reading({"counts_from": "auto", "bin_um": None, "other": 1}) == {}
    with pytest.raises(SessionError, match="bin_um must be a number"):
        slide_reading({"bin_um": "wide"})
