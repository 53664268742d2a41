"""Bad input and misuse on the command line (issue 15), one test per kind, on files derived from the real
shared slides: exit 2 with exactly one stderr line naming the file and the problem, the input unchanged,
no output left behind, and nothing trained in vain."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from cli_contract import (
    FAST,
    assert_bad_input,
    assert_contract,
    copy_visium,
    digest,
    listing,
    run,
    run_subprocess,
    small_adata,
)


@pytest.fixture(scope="module")
def base_adata(data_dir):
    """her2st_C2 cut to 300 genes (real counts; its H&E shrunk 10x with the scale factor to match)."""
    return small_adata(data_dir)


@pytest.fixture
def adata(base_adata):
    return base_adata.copy()


@pytest.fixture
def no_training(monkeypatch):
    """Fail loudly (internal error, exit 1) if training starts."""
    from napari_s2s.core.s2s.engine import S2SImputer

    def trained(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(S2SImputer, "fit_iter", trained)


def _lib(a) -> str:
    return next(iter(a.uns["spatial"]))


def _write(a, folder: Path, name: str = "slide.h5ad") -> Path:
    folder.mkdir(exist_ok=True)
    p = folder / name
    a.write_h5ad(p)
    return p


def _check_bad(argv, capsys, src: Path, folder: Path, *needles) -> str:
    """Run; exit 2, one line naming ``src`` (when given) and every needle; ``src`` and ``folder`` unchanged."""
    before, files = digest(src), listing(folder)
    rc, _, err = run(argv, capsys)
    line = assert_bad_input(rc, err, *needles)
    assert digest(src) == before, "the input changed"
    assert listing(folder) == files, f"left behind: {listing(folder) - files}"
    return line


# ---------------------------------------------------------------------- 1, 4: scale factors and uns['spatial']
def _sf(key, value):
    def mutate(a):
        a.uns["spatial"][_lib(a)]["scalefactors"][key] = value

    return mutate


def _spatial_lib(value):
    def mutate(a):
        a.uns["spatial"] = {_lib(a): value}

    return mutate


def _lib_key(key, value):
    def mutate(a):
        a.uns["spatial"][_lib(a)][key] = value

    return mutate


H5AD_METADATA = {
    "hires_scalef_text": (_sf("tissue_hires_scalef", "abc"), "tissue_hires_scalef"),
    "hires_scalef_zero": (_sf("tissue_hires_scalef", 0.0), "tissue_hires_scalef"),
    "hires_scalef_negative": (_sf("tissue_hires_scalef", -0.2), "tissue_hires_scalef"),
    "hires_scalef_nan": (_sf("tissue_hires_scalef", np.nan), "tissue_hires_scalef"),
    "hires_scalef_inf": (_sf("tissue_hires_scalef", np.inf), "tissue_hires_scalef"),
    "hires_scalef_bool": (_sf("tissue_hires_scalef", True), "tissue_hires_scalef"),
    "hires_scalef_array": (_sf("tissue_hires_scalef", np.array([0.2, 0.3])), "tissue_hires_scalef"),
    "spot_diameter_text": (_sf("spot_diameter_fullres", "big"), "spot_diameter_fullres"),
    "spot_diameter_zero": (_sf("spot_diameter_fullres", 0), "spot_diameter_fullres"),
    "lowres_scalef_negative": (_sf("tissue_lowres_scalef", -1.0), "tissue_lowres_scalef"),
    "library_is_text": (_spatial_lib("x"), "uns['spatial']"),
    "images_is_text": (_lib_key("images", "nope"), "['images']"),
    "scalefactors_is_list": (_lib_key("scalefactors", np.array([1.0, 2.0])), "['scalefactors']"),
    "spatial_is_text": (lambda a: a.uns.__setitem__("spatial", "x"), "uns['spatial']"),
}


@pytest.mark.parametrize("case", list(H5AD_METADATA))
def test_bad_scale_factors_and_spatial_metadata_h5ad(adata, tmp_path, capsys, case):
    mutate, field = H5AD_METADATA[case]
    mutate(adata)
    src = _write(adata, tmp_path / "in")
    _check_bad(["info", src], capsys, src, tmp_path, str(src), field)


SCALEFACTOR_JSON = {
    "list": ("[1, 2]", "json object"),
    "null": ("null", "json object"),
    "text_factor": ('{"tissue_lowres_scalef": "abc", "spot_diameter_fullres": 89.4}', "tissue_lowres_scalef"),
    "zero_factor": ('{"tissue_lowres_scalef": 0, "spot_diameter_fullres": 89.4}', "tissue_lowres_scalef"),
    "negative_diameter": ('{"tissue_lowres_scalef": 0.051, "spot_diameter_fullres": -100}', "spot_diameter_fullres"),
    "null_factor": ('{"tissue_lowres_scalef": null}', "tissue_lowres_scalef"),
    "huge_factor": ('{"tissue_lowres_scalef": 1e400}', "tissue_lowres_scalef"),
    "truncated": ('{"tissue_lowres_scalef": 0.05', "unreadable scale factors"),
    "empty": ("", "unreadable scale factors"),
}


@pytest.mark.parametrize("case", list(SCALEFACTOR_JSON))
def test_bad_scalefactors_json_in_spaceranger_folder(data_dir, tmp_path, capsys, case):
    text, needle = SCALEFACTOR_JSON[case]
    outs = copy_visium(data_dir, tmp_path / "outs")
    sf = outs / "spatial" / "scalefactors_json.json"
    sf.write_text(text)
    _check_bad(["info", outs], capsys, outs, tmp_path, str(sf), needle)


def test_benchmark_skips_a_slide_with_bad_scale_factors(data_dir, tmp_path, capsys):
    outs = copy_visium(data_dir, tmp_path / "outs")
    (outs / "spatial" / "scalefactors_json.json").write_text("[1, 2]")
    out = tmp_path / "r.json"
    before = digest(outs)
    rc, _, err = run(
        [
            "benchmark",
            outs,
            data_dir / "her2st_C2.h5ad",
            "--json",
            out,
            "--methods",
            "linear",
            "--genes",
            "top:3",
            "--quiet",
        ],
        capsys,
    )
    assert_contract(rc, err)
    assert rc == 0
    res = json.loads(out.read_text())
    assert [s["name"] for s in res["slides"]] == ["her2st_C2"]
    assert "scalefactors_json.json" in res["skipped"][0]["reason"]
    assert any("slide skipped" in line and "scale factors must be a JSON object" in line for line in err)
    assert digest(outs) == before
    # every slide bad: exit 2, one line that says why for each
    rc, _, err = run(["benchmark", outs, "--json", tmp_path / "r2.json", "--methods", "linear"], capsys)
    assert_bad_input(rc, err, "no slide could be benchmarked", "scalefactors_json.json")
    assert not (tmp_path / "r2.json").exists()


def test_zero_scale_factor_never_reaches_the_result(adata, tmp_path, capsys):
    """Issue item 4: a scale factor of 0 used to be accepted and kept in the output."""
    adata.uns["spatial"][_lib(adata)]["scalefactors"]["tissue_hires_scalef"] = 0
    src = _write(adata, tmp_path / "in")
    _check_bad(["impute", src, "--out", tmp_path / "o.h5ad", *FAST], capsys, src, tmp_path, "tissue_hires_scalef")


@pytest.mark.parametrize("value", ["0", "-100", "nan", "inf", "1e308"])
def test_non_positive_pitch_is_bad_input(data_dir, tmp_path, capsys, value):
    src = data_dir / "st_breast_cancer_layer2.h5ad"
    _check_bad(["info", src, f"--pitch-um={value}"], capsys, src, tmp_path, "--pitch-um")
    _check_bad(
        ["impute", src, "--out", tmp_path / "o.h5ad", f"--pitch-um={value}", *FAST], capsys, src, tmp_path, "--pitch-um"
    )


# ---------------------------------------------------------------------- 2, 3: outputs checked before training
def _out_cases(tmp_path: Path, src: Path) -> dict:
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_folder").mkdir()
    return {
        "under_a_regular_file": (["--out", tmp_path / "a_file" / "o.h5ad"], "not a folder"),
        "under_the_input_file": (["--out", src / "o.h5ad"], "not a folder"),
        "proc": (["--out", "/proc/o.h5ad"], "cannot create files in /proc"),
        "missing_folder": (["--out", tmp_path / "no" / "such" / "o.h5ad"], "does not exist"),
        "out_is_a_folder": (["--out", tmp_path / "a_folder"], "is a folder"),
        "out_is_the_input": (["--out", src], "refusing to overwrite"),
        "out_of_another_format": (["--out", tmp_path / "o.csv"], "name a .h5ad file (AnnData) or a .zarr store"),
        "out_without_suffix": (["--out", tmp_path / "imputed"], "add the suffix"),
        "model_missing_folder": (
            ["--out", tmp_path / "o.h5ad", "--save-model", tmp_path / "no/such/dir/m.pt"],
            "--save-model",
        ),
        "model_under_a_file": (
            ["--out", tmp_path / "o.h5ad", "--save-model", tmp_path / "a_file" / "m.pt"],
            "--save-model",
        ),
        "model_is_the_out": (["--out", tmp_path / "o.h5ad", "--save-model", tmp_path / "o.h5ad"], "same file"),
        "model_is_the_input": (["--out", tmp_path / "o.h5ad", "--save-model", src], "refusing to overwrite"),
        "model_not_pt": (["--out", tmp_path / "o.h5ad", "--save-model", tmp_path / "m.txt"], "name a .pt file"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "under_a_regular_file",
        "under_the_input_file",
        "proc",
        "missing_folder",
        "out_is_a_folder",
        "out_is_the_input",
        "out_of_another_format",
        "out_without_suffix",
        "model_missing_folder",
        "model_under_a_file",
        "model_is_the_out",
        "model_is_the_input",
    ],
)
def test_outputs_are_checked_before_training(adata, tmp_path, capsys, no_training, case):
    src = _write(adata, tmp_path / "in")
    opts, needle = _out_cases(tmp_path, src)[case]
    _check_bad(["impute", src, *opts, *FAST], capsys, src, tmp_path, needle)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(adata, tmp_path, capsys, no_training):
    src = _write(adata, tmp_path / "in")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        _check_bad(["impute", src, "--out", ro / "o.h5ad", *FAST], capsys, src, tmp_path, "cannot create files")
    finally:
        ro.chmod(0o755)


def test_a_failed_model_write_leaves_nothing_behind(adata, tmp_path, capsys, monkeypatch):
    """Result and model are written all-or-nothing: the model failing removes the staged result too."""
    from napari_s2s.core.s2s.engine import S2SImputer

    def disk_full(self, path):
        Path(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(S2SImputer, "save", disk_full)
    src = _write(adata, tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    # (--quiet: a failure after training follows the progress lines already printed)
    _check_bad(
        ["impute", src, "--out", out / "o.h5ad", "--save-model", out / "m.pt", "--genes", "top:2", "--quiet", *FAST],
        capsys,
        src,
        tmp_path,
        "m.pt",
        "no space left",
    )
    assert listing(out) == set()


# ---------------------------------------------------------------------- 5: grids far larger than the spots
def test_one_outlier_coordinate_is_refused_before_any_large_allocation(adata, tmp_path, capsys, no_training):
    rows = adata.obs["array_row"].to_numpy().astype(np.int64)
    rows[0] = 10**9
    adata.obs["array_row"] = rows
    src = _write(adata, tmp_path / "in")
    for argv in (["info", src], ["impute", src, "--out", tmp_path / "o.h5ad", *FAST]):
        _check_bad(argv, capsys, src, tmp_path, str(src), "far more than the spots can fill")


def test_outlier_coordinate_in_spaceranger_positions(data_dir, tmp_path, capsys):
    outs = copy_visium(data_dir, tmp_path / "outs")
    pos = outs / "spatial" / "tissue_positions_list.csv"
    lines = pos.read_text().splitlines()
    i = next(k for k, line in enumerate(lines) if line.split(",")[1] == "1")
    f = lines[i].split(",")
    f[2] = "1000000000"
    lines[i] = ",".join(f)
    pos.write_text("\n".join(lines) + "\n")
    _check_bad(["info", outs], capsys, outs, tmp_path, "far more than the spots can fill")


# ---------------------------------------------------------------------- 6: settings
@pytest.mark.parametrize(
    "opts,needle",
    [
        (["--budget", "nan"], "--budget"),
        (["--budget", "inf"], "--budget"),
        (["--budget", "0"], "--budget"),
        (["--budget=-1"], "--budget"),
        (["--budget", "abc"], "--budget"),
        (["--threads", "0"], "--threads"),
        (["--seed=-1"], "--seed"),
        (["--max-steps=-1"], "--max-steps"),
        (["--max-steps", "1.5"], "--max-steps"),
        (["--preset", "huge"], "--preset"),
        (["--aux-genes=-1"], "--aux-genes"),
        (["--aux-genes", "many"], "--aux-genes"),
        (["--genes", "top:0"], "top:"),
        (["--genes", "top:x"], "top:"),
        (["--genes", ",,"], "empty"),
        (["--genes", "8"], "top:8 takes the 8 most variable genes"),
        (["--bogus-option"], "unrecognized"),
    ],
)
def test_bad_settings_are_one_line(data_dir, tmp_path, capsys, no_training, opts, needle):
    src = data_dir / "st_breast_cancer_layer2.h5ad"
    fast = FAST[2:] if "--max-steps" in " ".join(opts) else FAST  # FAST starts with --max-steps 1
    _check_bad(["impute", src, "--out", tmp_path / "o.h5ad", *fast, *opts], capsys, src, tmp_path, needle)


@pytest.mark.parametrize(
    "opts", [["--budget", "nan"], ["--budget", "-5"], ["--seed=-1"], ["--plot", "x.unknownformat"], ["--methods", ","]]
)
def test_benchmark_bad_settings(data_dir, tmp_path, capsys, opts):
    src = data_dir / "st_breast_cancer_layer2.h5ad"
    opts = [str(tmp_path / o) if o.startswith("x.") else o for o in opts]
    _check_bad(["benchmark", src, "--json", tmp_path / "r.json", "--methods", "linear", *opts], capsys, src, tmp_path)


def test_missing_command_or_arguments_are_one_line(capsys):
    for argv in ([], ["impute"], ["info", "--json", "--what"], ["nosuchcommand"]):
        rc, _, err = run(argv, capsys)
        assert_bad_input(rc, err, "error")


# ---------------------------------------------------------------------- 7: one stderr line
def test_all_zero_counts_is_one_line(adata, tmp_path, capsys):
    adata.X = sp.csr_matrix(adata.shape, dtype=np.float32)
    src = _write(adata, tmp_path / "in")
    _check_bad(["impute", src, "--out", tmp_path / "o.h5ad", *FAST], capsys, src, tmp_path, "too few spots")


def test_all_nan_image_is_one_line_naming_the_file(adata, tmp_path, capsys):
    adata.uns["spatial"][_lib(adata)]["images"]["hires"] = np.full((50, 40, 3), np.nan, np.float32)
    src = _write(adata, tmp_path / "in")
    _check_bad(["info", src], capsys, src, tmp_path, str(src), "image 'hires'", "no finite pixel")


def test_text_file_as_png_in_a_fresh_interpreter(data_dir, tmp_path):
    """No 'unclosed file' or imageio deprecation warnings around the one error line (Python's own filters)."""
    outs = copy_visium(data_dir, tmp_path / "outs")
    png = outs / "spatial" / "tissue_lowres_image.png"
    png.write_text("this is not a png\n")
    before = digest(outs)
    r = run_subprocess(["info", outs], env={**os.environ, "PYTHONWARNINGS": "default"})
    assert_bad_input(r.returncode, r.stderr.splitlines(), str(png), "unreadable image")
    assert digest(outs) == before


@pytest.mark.parametrize(
    "image,needle",
    [
        (np.zeros((0, 0, 3), np.uint8), "shape"),
        (np.zeros((40, 30, 5), np.uint8), "shape"),
        (np.zeros((2, 40, 30, 3), np.uint8), "shape"),
        (np.array(["a", "b"]), "values"),
        (np.zeros((40, 30, 3), np.complex64), "values"),
    ],
)
def test_images_of_wrong_shape_or_dtype(adata, tmp_path, capsys, image, needle):
    adata.uns["spatial"][_lib(adata)]["images"]["hires"] = image
    src = _write(adata, tmp_path / "in")
    _check_bad(["info", src], capsys, src, tmp_path, "image 'hires'", needle)


@pytest.mark.parametrize(
    "image",
    [
        np.full((600, 600), 0.5, np.float64),
        np.full((600, 600, 1), 9, np.uint16),
        np.full((600, 600, 2), 200, np.uint8),
        np.full((600, 600, 4), 1, bool),
    ],
)
def test_grey_alpha_and_other_dtypes_are_fine(adata, tmp_path, capsys, image):
    lib = _lib(adata)
    adata.uns["spatial"][lib]["images"]["hires"] = image
    adata.uns["spatial"][lib]["scalefactors"]["tissue_hires_scalef"] = 0.05
    src = _write(adata, tmp_path / "in")
    rc, out, err = run(["info", src, "--json"], capsys)
    assert rc == 0, err
    assert json.loads(out)["images"]["hires"] == [600, 600]


# ---------------------------------------------------------------------- 8: output file modes
def test_output_files_get_the_mode_of_a_normal_write(adata, tmp_path, capsys, data_dir):
    src = _write(adata, tmp_path / "in")
    out, model, js = tmp_path / "o.h5ad", tmp_path / "m.pt", tmp_path / "r.json"
    old = os.umask(0o027)
    try:
        rc, _, err = run(
            ["impute", src, "--out", out, "--save-model", model, "--genes", "top:2", "--quiet", *FAST], capsys
        )
        assert rc == 0, err
        rc, _, err = run(["benchmark", src, "--json", js, "--methods", "linear", "--genes", "top:2", "--quiet"], capsys)
        assert rc == 0, err
    finally:
        os.umask(old)
    for f in (out, model, js):
        assert stat.S_IMODE(f.stat().st_mode) == 0o640, (f, oct(f.stat().st_mode))
    # an existing file keeps its mode, as a normal overwrite would
    js.chmod(0o604)
    rc, _, err = run(["benchmark", src, "--json", js, "--methods", "linear", "--genes", "top:2", "--quiet"], capsys)
    assert rc == 0 and stat.S_IMODE(js.stat().st_mode) == 0o604
    assert not [p for p in listing(tmp_path) if p.endswith(".tmp")]


# ---------------------------------------------------------------------- 9: genes, pipes, in_tissue, folders
def test_repeated_genes_are_dropped(adata, tmp_path, capsys):
    src = _write(adata, tmp_path / "in")
    g = [str(x) for x in adata.var_names[:2]]
    out = tmp_path / "o.h5ad"
    rc, _, err = run(
        ["impute", src, "--out", out, "--genes", f"{g[0]},{g[0]}, {g[1]},{g[0]}", "--quiet", *FAST], capsys
    )
    assert rc == 0, err
    assert list(ad.read_h5ad(out).var_names) == g
    assert err == [f"napari-s2s: warning: --genes: repeated name(s) dropped: {g[0]}"]


def test_gene_name_holding_a_comma(adata, tmp_path, capsys):
    names = [str(x) for x in adata.var_names]
    names[0] = "HLA,A"
    adata.var_names = names
    src = _write(adata, tmp_path / "in")
    out = tmp_path / "o.h5ad"
    rc, _, err = run(["impute", src, "--out", out, "--genes", "HLA,A", "--quiet", *FAST], capsys)
    assert rc == 0, err
    assert list(ad.read_h5ad(out).var_names) == ["HLA,A"]


def test_info_json_into_a_closed_pipe(data_dir):
    """``napari-s2s info --json | head -c0``: the reader went away; no BrokenPipeError traceback."""
    r_fd, w_fd = os.pipe()
    os.close(r_fd)  # nobody reads: every write fails with EPIPE
    try:
        r = run_subprocess(["info", data_dir / "her2st_C2.h5ad", "--json"], stdout=w_fd, stderr=subprocess.PIPE)
    finally:
        os.close(w_fd)
    assert r.returncode == 0
    assert r.stderr == ""


def test_top_n_beyond_the_panel_warns_with_the_cost(data_dir, tmp_path, capsys, monkeypatch):
    import napari_s2s.core.jobs as jobs

    monkeypatch.setattr(jobs, "MANY_GENES", 5)  # the real threshold is 200 genes; keep the test short
    src = _write(small_adata(data_dir, n_genes=12), tmp_path / "in")
    out = tmp_path / "o.h5ad"
    rc, _, err = run(["impute", src, "--out", out, "--genes", "top:100000", "--quiet", *FAST], capsys)
    assert rc == 0, err
    n = ad.read_h5ad(out).n_vars
    assert 5 < n <= 12
    assert any(f"only {n} genes are detected" in line for line in err)
    cost = [line for line in err if "the default 30: imputation after the --budget training grows" in line]
    assert len(cost) == 1 and "MB" in cost[0] and f"{n} genes" in cost[0]


@pytest.mark.parametrize("value", [np.nan, 2, "maybe"])
def test_bad_in_tissue_is_bad_input(adata, tmp_path, capsys, value):
    if isinstance(value, str):
        col = adata.obs["in_tissue"].astype(int).astype(str).to_numpy()
    else:
        col = adata.obs["in_tissue"].to_numpy().astype(float)
    col[3] = value
    adata.obs["in_tissue"] = col
    src = _write(adata, tmp_path / "in")
    _check_bad(["info", src], capsys, src, tmp_path, "obs['in_tissue']")


def test_missing_output_folder_one_rule_for_every_command(data_dir, tmp_path, capsys, no_training):
    src = data_dir / "st_breast_cancer_layer2.h5ad"
    missing = tmp_path / "missing"
    for argv in (
        ["impute", src, "--out", missing / "o.h5ad", *FAST],
        ["benchmark", src, "--json", missing / "r.json", "--methods", "linear"],
        ["benchmark", src, "--json", tmp_path / "r.json", "--plot", missing / "r.png", "--methods", "linear"],
    ):
        _check_bad(argv, capsys, src, tmp_path, "does not exist")
    assert not missing.exists()


# ---------------------------------------------------------------------- more cases of our own
def test_duplicated_obs_names_and_nan_var_names_still_work(adata, tmp_path, capsys):
    adata.obs_names = ["spot"] * adata.n_obs
    names = np.asarray(adata.var_names).astype(object)
    names[5] = np.nan
    adata.var_names = [str(n) for n in names]
    src = _write(adata, tmp_path / "in")
    out = tmp_path / "o.h5ad"
    rc, _, err = run(["impute", src, "--out", out, "--genes", "top:2", "--quiet", *FAST], capsys)
    assert_contract(rc, err)
    assert rc == 0 and ad.read_h5ad(out).n_obs > adata.n_obs


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda a: np.full(a.shape, "x", dtype=object), "X"),
        (lambda a: np.full(a.shape, 1 + 2j), "X"),
        (lambda a: np.full(a.shape, 1e300), "float32 range"),
    ],
)
def test_count_matrix_of_wrong_dtype(adata, tmp_path, capsys, make, needle):
    adata.X = make(adata)
    src = _write(adata, tmp_path / "in")
    _check_bad(["info", src], capsys, src, tmp_path, str(src), needle)


def test_empty_files_and_folders_where_files_belong(data_dir, tmp_path, capsys):
    empty = tmp_path / "empty.h5ad"
    empty.write_bytes(b"")
    _check_bad(["info", empty], capsys, empty, tmp_path, "not a readable")
    folder_h5ad = tmp_path / "folder.h5ad"
    folder_h5ad.mkdir()
    _check_bad(["info", folder_h5ad], capsys, folder_h5ad, tmp_path, "is not a slide")
    outs = copy_visium(data_dir, tmp_path / "outs")
    (outs / "spatial" / "tissue_positions_list.csv").write_text("")
    _check_bad(["info", outs], capsys, outs, tmp_path, "positions")
    outs2 = copy_visium(data_dir, tmp_path / "outs2")
    (outs2 / "filtered_feature_bc_matrix.h5").write_bytes(b"")
    _check_bad(["info", outs2], capsys, outs2, tmp_path, "10x hdf5")


def test_symlinks(adata, tmp_path, capsys, no_training):
    src = _write(adata, tmp_path / "in")
    link = tmp_path / "link.h5ad"
    link.symlink_to(src)
    rc, out, err = run(["info", link, "--json"], capsys)
    assert rc == 0 and json.loads(out)["spots_total"] == adata.n_obs
    dangling = tmp_path / "dangling.h5ad"
    dangling.symlink_to(tmp_path / "nowhere.h5ad")
    _check_bad(["info", dangling], capsys, src, tmp_path, "no such file")
    # an output that is a link to the input is the input
    out_link = tmp_path / "out_link.h5ad"
    out_link.symlink_to(src)
    _check_bad(["impute", src, "--out", out_link, *FAST], capsys, src, tmp_path, "refusing to overwrite")


def test_non_utf8_file_name(data_dir, tmp_path, capsys):
    name = os.fsdecode(b"slide_\xff.h5ad")
    src = tmp_path / name
    src.write_bytes((data_dir / "st_breast_cancer_layer2.h5ad").read_bytes())
    rc, out, err = run(["info", src], capsys)
    assert rc == 0 and err == [] and "slide_" in out
    bad = tmp_path / os.fsdecode(b"bad_\xfe.h5ad")
    bad.write_bytes(b"not hdf5")
    _check_bad(["info", bad], capsys, bad, tmp_path, "not a readable")


def test_truncated_spaceranger_matrix_and_image(data_dir, tmp_path, capsys):
    outs = copy_visium(data_dir, tmp_path / "outs")
    m = outs / "filtered_feature_bc_matrix.h5"
    m.write_bytes(m.read_bytes()[: m.stat().st_size // 2])
    _check_bad(["info", outs], capsys, outs, tmp_path, "10x hdf5")
    outs2 = copy_visium(data_dir, tmp_path / "outs2")
    png = outs2 / "spatial" / "tissue_lowres_image.png"
    png.write_bytes(png.read_bytes()[:5000])
    _check_bad(["info", outs2], capsys, outs2, tmp_path, "unreadable image")


def test_positions_with_text_pixels_or_duplicate_barcodes(data_dir, tmp_path, capsys):
    outs = copy_visium(data_dir, tmp_path / "outs")
    pos = outs / "spatial" / "tissue_positions_list.csv"
    lines = pos.read_text().splitlines()
    f = lines[0].split(",")
    f[4] = "abc"
    pos.write_text("\n".join([",".join(f), *lines[1:]]) + "\n")
    _check_bad(["info", outs], capsys, outs, tmp_path, "pxl_row_in_fullres", "not numeric")
    pos.write_text("\n".join([*lines, lines[0]]) + "\n")
    _check_bad(["info", outs], capsys, outs, tmp_path, "duplicated barcode")


@pytest.mark.parametrize(
    "argv, prog",
    [
        (["impute", "x.h5ad", "--out", "y.h5ad", "--foo", "1"], "napari-s2s impute"),
        (["session", "stats", "s.json", "--bogus"], "napari-s2s session stats"),
    ],
)
def test_an_unknown_option_points_to_its_commands_help(argv, prog, capsys, tmp_path):
    rc, _, err = run(argv, capsys)
    assert rc == 2 and len(err) == 1
    assert err[0].startswith(f"{prog}: error: unrecognized arguments") and err[0].endswith(f"(see {prog} --help)")


def test_a_path_and_sample_together_is_one_line(capsys, data_dir):
    rc, _, err = run(["info", data_dir / "her2st_C2.h5ad", "--sample"], capsys)
    assert rc == 2 and err == ["napari-s2s info: error: give a PATH or --sample, not both (see napari-s2s info --help)"]


@pytest.mark.parametrize("argv", [["report"], ["session", "stats"]])
def test_optional_answer_files_are_not_listed_as_required(argv, capsys):
    rc, _, err = run(argv, capsys)
    assert rc == 2 and len(err) == 1 and "required: session" in err[0] and "ANSWERS" not in err[0]
