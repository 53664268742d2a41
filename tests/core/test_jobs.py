"""The impute job shared by `impute` and `batch`, and when an existing result is the one asked for."""

from __future__ import annotations

import anndata as ad
import numpy as np
from conftest import slide_path

from napari_s2s.core.data.io import read_slide
from napari_s2s.core.jobs import ImputeSettings, result_matches, run_impute_job

SETTINGS = ImputeSettings(genes="top:2", max_steps=1, natural=False, tta=False, seed=3, device="cpu", threads=1)


def test_result_matches_only_the_same_source_genes_and_settings(tmp_path, data_dir):
    src = slide_path(data_dir, "st_breast_cancer_layer2")
    out = tmp_path / "r_s2s.h5ad"
    assert result_matches(out, src, SETTINGS) == "no output yet"
    done = run_impute_job(src, out, SETTINGS)
    assert done.out == out and done.device == "cpu" and len(done.genes) == 2 and done.steps == 1
    res = ad.read_h5ad(out)
    assert res.uns["s2s"]["genes_requested"] == "top:2" and list(res.var_names) == done.genes
    slide = read_slide(src)
    assert done.n_measured == int(slide.usable().sum())

    assert result_matches(out, src, SETTINGS) is None
    assert result_matches(out, src, SETTINGS.replace(threads=2, device="auto")) is None  # how, not what
    assert result_matches(out, src, SETTINGS.replace(seed=4)).startswith("other settings (seed 3 != 4")
    assert result_matches(out, src, SETTINGS.replace(max_steps=5)).startswith("other settings (max_steps")
    assert result_matches(out, src, SETTINGS.replace(tta=True)).startswith("other settings (tta")
    assert result_matches(out, src, SETTINGS.replace(genes="top:3")).startswith("other genes asked")
    assert result_matches(out, src, SETTINGS.replace(genes=",".join(done.genes))).startswith("other genes asked")
    assert result_matches(out, slide_path(data_dir, "her2st_C2"), SETTINGS).startswith("made from another source")
    assert dict(res.uns["s2s"]["reading"]) == {"counts_from": "auto"}  # how the slide was read
    for other in (dict(pitch_um=150.0), dict(bin_um=20.0), dict(counts_from="transcripts")):
        assert result_matches(out, src, SETTINGS.replace(**other)).startswith("read with other options (")
    del res.uns["s2s"]["reading"]  # a result made before the reading options were recorded: the defaults
    old = tmp_path / "old_s2s.h5ad"
    res.write_h5ad(old)
    assert result_matches(old, src, SETTINGS) is None
    assert result_matches(old, src, SETTINGS.replace(bin_um=20.0)) == "read with other options (bin_um None != 20.0)"

    explicit = SETTINGS.replace(genes=",".join(done.genes))
    out2 = tmp_path / "r2_s2s.h5ad"
    run_impute_job(src, out2, explicit)
    assert result_matches(out2, src, explicit) is None
    assert np.array_equal(np.asarray(ad.read_h5ad(out2).X), np.asarray(res.X))  # same genes, seed, steps

    out.write_bytes(out.read_bytes()[: out.stat().st_size // 2])  # a truncated file is not a result
    assert result_matches(out, src, SETTINGS).startswith("unreadable")
