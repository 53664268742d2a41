"""Property-style tests of the CLI contract: corrupted metadata and truncated files, derived from the real
shared slides by hypothesis, go through ``info`` (and a cheap ``impute``). Whatever the corruption:
exit 0, or exit 2 with exactly one stderr line; never a traceback; the input unchanged; no output (or
temporary file) left behind when the command fails.

The number of examples is bounded and the search derandomised (the same cases on every run, in CI too);
``NAPARI_S2S_HYPOTHESIS_EXAMPLES=10`` scales it, and ``NAPARI_S2S_HYPOTHESIS_RANDOM=1`` draws new cases, for a
longer local hunt.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pytest
from cli_contract import FAST, assert_contract, copy_visium, digest, listing, run, small_adata
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.extra import numpy as hnp

# hypothesis keeps caches in ./.hypothesis by default: keep the checkout clean (as -p no:cacheprovider does)
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "napari-s2s-hypothesis")

SCALE = float(os.environ.get("NAPARI_S2S_HYPOTHESIS_EXAMPLES", "1"))


def _settings(n: int):
    return settings(
        max_examples=max(1, int(n * SCALE)),
        deadline=None,
        derandomize=not os.environ.get("NAPARI_S2S_HYPOTHESIS_RANDOM"),
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


_counter = itertools.count()


def _fresh(tmp_path: Path) -> Path:
    """A new empty folder per hypothesis example (function-scoped fixtures are shared by examples)."""
    p = tmp_path / f"ex{next(_counter)}"
    p.mkdir()
    return p


@pytest.fixture(scope="module")
def base(data_dir):
    """her2st_C2 cut to 200 genes, its H&E downscaled 10x (scale factor adjusted): small and fast, still real."""
    return small_adata(data_dir, n_genes=200)


def _check_info(path: Path, folder: Path, capsys) -> int:
    before, files = digest(path), listing(folder)
    rc, out, err = run(["info", path, "--json"], capsys)
    assert_contract(rc, err)
    if rc == 0:
        info = json.loads(out)
        assert info["spots_in_tissue"] >= 1 and info["genes"] >= 1
    assert digest(path) == before, "the input changed"
    assert listing(folder) == files, "info left files behind"
    return rc


# ---------------------------------------------------------------------- junk values
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(-5, 5), max_size=2),
)

IMAGES = hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64, np.bool_, np.complex64]),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6),
    elements=None,
)

SF_KEYS = [
    "tissue_hires_scalef",
    "tissue_lowres_scalef",
    "spot_diameter_fullres",
    "fiducial_diameter_fullres",
    "regist_target_img_scalef",
    "other",
]


def _lib(a):
    return next(iter(a.uns["spatial"]))


def _dense(x) -> np.ndarray:
    return np.asarray(x.todense()) if hasattr(x, "todense") else np.asarray(x)


@st.composite
def mutation(draw):
    """A function that corrupts an AnnData in place (one of many kinds, with drawn values)."""
    kind = draw(
        st.sampled_from(
            [
                "scalefactor",
                "lib_key",
                "spatial",
                "image",
                "obs_value",
                "obs_names",
                "var_names",
                "x_value",
                "x_dtype",
                "obsm",
                "delete",
            ]
        )
    )
    if kind == "scalefactor":
        key, value = draw(st.sampled_from(SF_KEYS)), draw(JUNK)
        return kind, lambda a: a.uns["spatial"][_lib(a)]["scalefactors"].__setitem__(key, value)
    if kind == "lib_key":
        key, value = draw(st.sampled_from(["images", "scalefactors", "metadata"])), draw(JUNK)
        return kind, lambda a: a.uns["spatial"][_lib(a)].__setitem__(key, value)
    if kind == "spatial":
        value, whole = draw(JUNK), draw(st.booleans())
        return kind, (lambda a: a.uns.__setitem__("spatial", value if whole else {_lib(a): value}))
    if kind == "image":
        img, key = draw(IMAGES), draw(st.sampled_from(["hires", "lowres"]))
        return kind, lambda a: a.uns["spatial"][_lib(a)]["images"].__setitem__(key, img)
    if kind == "obs_value":
        col = draw(st.sampled_from(["in_tissue", "array_row", "array_col"]))
        i = draw(st.integers(0, 186))
        value = draw(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**15), 10**15)))

        def set_obs(a):
            v = a.obs[col].to_numpy().astype(np.float64)
            v[i] = value
            a.obs[col] = v

        return kind, set_obs
    if kind == "obs_names":
        return kind, lambda a: setattr(a, "obs_names", ["s"] * a.n_obs)
    if kind == "var_names":
        name, i = draw(st.sampled_from(["", "nan", "A,B", "a/b", " ", "x" * 300])), draw(st.integers(0, 199))

        def set_var(a):
            names = [str(v) for v in a.var_names]
            names[i] = name
            names[(i + 1) % len(names)] = name  # a duplicate too
            a.var_names = names

        return kind, set_var
    if kind == "x_value":
        value = draw(st.floats(allow_nan=True, allow_infinity=True))
        r, c = draw(st.integers(0, 186)), draw(st.integers(0, 199))

        def set_x(a):
            x = _dense(a.X).astype(np.float64)
            x[r, c] = value
            a.X = x

        return kind, set_x
    if kind == "x_dtype":
        dt = draw(st.sampled_from([np.bool_, np.int8, np.uint64, np.float16, np.float64]))

        def cast(a):
            with np.errstate(all="ignore"):
                a.X = _dense(a.X).astype(dt)

        return kind, cast
    if kind == "obsm":
        how = draw(st.sampled_from(["nan_row", "one_column", "huge", "text"]))
        i = draw(st.integers(0, 186))

        def set_obsm(a):
            xy = np.asarray(a.obsm["spatial"], dtype=np.float64).copy()
            if how == "nan_row":
                xy[i] = np.nan
            elif how == "huge":
                xy[i] = 1e300
            elif how == "one_column":
                xy = xy[:, :1]
            else:
                xy = np.full(xy.shape, "x", dtype=object)
            a.obsm["spatial"] = xy

        return kind, set_obsm
    what = draw(st.sampled_from(["array_row", "in_tissue", "obsm_spatial", "uns_spatial", "rows_and_pixels"]))

    def delete(a):
        if what in ("array_row", "in_tissue"):
            del a.obs[what]
        elif what == "obsm_spatial":
            del a.obsm["spatial"]
        elif what == "uns_spatial":
            del a.uns["spatial"]
        else:
            del a.obs["array_row"], a.obsm["spatial"]

    return "delete", delete


def _write_mutated(base, mutations, folder: Path) -> Path:
    a = base.copy()
    for _, m in mutations:
        try:
            m(a)
        except (KeyError, AttributeError, TypeError, ValueError, IndexError, StopIteration):
            pass  # an earlier mutation removed what this one changes
    p = folder / "slide.h5ad"
    try:
        a.write_h5ad(p)
    except Exception:  # anndata cannot store this value: not a file anyone can have
        assume(False)
    return p


@_settings(30)
@given(mutations=st.lists(mutation(), min_size=1, max_size=3))
def test_corrupted_h5ad_metadata_through_info(base, tmp_path, capsys, mutations):
    folder = _fresh(tmp_path)
    p = _write_mutated(base, mutations, folder)
    _check_info(p, folder, capsys)


@_settings(5)
@given(mutations=st.lists(mutation(), min_size=1, max_size=2))
def test_corrupted_h5ad_through_a_tiny_impute(base, tmp_path, capsys, mutations):
    folder = _fresh(tmp_path)
    p = _write_mutated(base, mutations, folder)
    out_dir = folder / "out"
    out_dir.mkdir()
    out = out_dir / "o.h5ad"
    before = digest(p)
    rc, _, err = run(["impute", p, "--out", out, "--genes", "top:2", "--quiet", *FAST], capsys)
    assert_contract(rc, err)
    assert digest(p) == before
    if rc == 0:
        assert listing(out_dir) == {"o.h5ad"} and ad.read_h5ad(out).n_obs > 0
    else:
        assert listing(out_dir) == set()


# ---------------------------------------------------------------------- truncated and damaged files
SOURCES = ["h5ad", "matrix", "positions", "scalefactors", "image"]


@st.composite
def damage(draw):
    """(which file, how): truncate at a fraction, overwrite bytes, or empty the file."""
    which = draw(st.sampled_from(SOURCES))
    how = draw(st.sampled_from(["truncate", "overwrite", "empty"]))
    frac = draw(st.floats(0.0, 1.0, exclude_max=True))
    junk = draw(st.binary(min_size=1, max_size=64))
    return which, how, frac, junk


@_settings(25)
@given(d=damage())
def test_truncated_or_damaged_files_through_info(base, data_dir, tmp_path, capsys, d):
    which, how, frac, junk = d
    folder = _fresh(tmp_path)
    if which == "h5ad":
        target = folder / "slide.h5ad"
        base.write_h5ad(target)
        path = target
    else:
        path = copy_visium(data_dir, folder / "outs")
        target = {
            "matrix": path / "filtered_feature_bc_matrix.h5",
            "positions": path / "spatial" / "tissue_positions_list.csv",
            "scalefactors": path / "spatial" / "scalefactors_json.json",
            "image": path / "spatial" / "tissue_lowres_image.png",
        }[which]
    data = target.read_bytes()
    cut = int(frac * len(data))
    if how == "truncate":
        data = data[:cut]
    elif how == "overwrite":
        data = data[:cut] + junk + data[cut + len(junk) :]
    else:
        data = b""
    target.write_bytes(data)
    _check_info(path, folder, capsys)


def _h5_datasets(path: Path) -> list[str]:
    names: list[str] = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return sorted(names)


H5_JUNK = st.one_of(
    st.just(np.array([], dtype=np.float64)),
    st.just(np.array(b"abc")),
    st.just(np.array([np.nan, np.inf, -1.0])),
    hnp.arrays(dtype=st.sampled_from([np.int64, np.float32, np.uint8]), shape=hnp.array_shapes(max_dims=2, max_side=5)),
)


@_settings(20)
@given(pick=st.integers(0, 10**6), action=st.sampled_from(["replace", "delete", "attrs"]), value=H5_JUNK)
def test_corrupted_hdf5_nodes_through_info(base, data_dir, tmp_path, capsys, pick, action, value):
    """Replace, delete or mislabel one dataset of an .h5ad (or of the 10x matrix) at the HDF5 level."""
    folder = _fresh(tmp_path)
    if pick % 3 == 0:
        path = copy_visium(data_dir, folder / "outs")
        target = path / "filtered_feature_bc_matrix.h5"
    else:
        path = target = folder / "slide.h5ad"
        base.write_h5ad(target)
    names = _h5_datasets(target)
    name = names[pick % len(names)]
    with h5py.File(target, "r+") as f:
        if action == "delete":
            del f[name]
        elif action == "attrs":
            f[name].attrs["encoding-type"] = "something-else"
        else:
            attrs = dict(f[name].attrs)
            del f[name]
            f.create_dataset(name, data=value)
            for k, v in attrs.items():
                f[name].attrs[k] = v
    _check_info(path, folder, capsys)


JSON_LEAVES = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False), st.integers(), st.text(max_size=5)
)


def _json_containers(kids):
    return st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3)


JSON = st.recursive(JSON_LEAVES, _json_containers, max_leaves=6)


@_settings(15)
@given(
    doc=st.one_of(
        JSON,
        st.fixed_dictionaries({}, optional={k: st.one_of(JSON, st.floats(-1e3, 1e3)) for k in SF_KEYS}),
    )
)
def test_scalefactors_json_of_any_shape_through_info(data_dir, tmp_path, capsys, doc):
    folder = _fresh(tmp_path)
    outs = copy_visium(data_dir, folder / "outs")
    (outs / "spatial" / "scalefactors_json.json").write_text(json.dumps(doc))
    _check_info(outs, folder, capsys)
