"""Atomic writes of imputed results that never overwrite the input."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

from napari_s2s.core.errors import SlideError
from napari_s2s.core.s2s.results import check_output_path, write_imputed


def _adata(source: str = "") -> ad.AnnData:
    a = ad.AnnData(X=np.arange(6, dtype=np.float32).reshape(3, 2))
    a.uns["s2s"] = {"source": source}
    return a


def test_write_is_atomic_and_readable(tmp_path):
    out = tmp_path / "res.h5ad"
    write_imputed(_adata(), out)
    assert np.array_equal(ad.read_h5ad(out).X, _adata().X)
    assert [p.name for p in tmp_path.iterdir()] == ["res.h5ad"]  # no temporary file left


def test_refuses_to_overwrite_the_input(tmp_path):
    src = tmp_path / "slide.h5ad"
    _adata().write_h5ad(src)
    before = src.read_bytes()
    with pytest.raises(SlideError, match="refusing to overwrite the input"):
        write_imputed(_adata(str(src)), src)
    with pytest.raises(SlideError, match="refusing"):
        write_imputed(_adata(), tmp_path / "." / "slide.h5ad", source=src)
    outs = tmp_path / "outs"
    outs.mkdir()
    with pytest.raises(SlideError, match="refusing"):
        check_output_path(outs / "x.h5ad", outs)
    assert src.read_bytes() == before


def test_bad_output_paths(tmp_path):
    with pytest.raises(SlideError, match="does not exist"):
        write_imputed(_adata(), tmp_path / "nope" / "x.h5ad")
    with pytest.raises(SlideError, match="folder"):
        write_imputed(_adata(), tmp_path)


def test_failed_write_leaves_no_partial_file(tmp_path):
    a = _adata()
    a.uns["bad"] = object()  # not serialisable
    out = tmp_path / "res.h5ad"
    with pytest.raises(Exception):  # noqa: B017  (whatever h5py / anndata raise for it)
        write_imputed(a, out)
    assert list(tmp_path.iterdir()) == []
