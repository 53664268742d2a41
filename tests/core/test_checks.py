"""``core.checks``: the reusable value checks, the grid-extent rule, output pre-flight and all-or-nothing writes."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from napari_s2s.core.checks import (
    GRID_CELLS_FREE,
    as_mapping,
    atomic_write,
    check_grid_extent,
    check_output_path,
    optional_positive_number,
    positive_number,
    write_outputs,
)
from napari_s2s.core.errors import SlideError


@pytest.mark.parametrize("value", [0.25, 3, np.float32(2.5), np.int64(7), np.array(0.5), np.array([4.0])])
def test_positive_numbers_pass(value):
    assert positive_number(value, "f.json", "tissue_hires_scalef") == pytest.approx(float(np.ravel(value)[0]))


@pytest.mark.parametrize(
    "value,word",
    [
        (0, "positive"),
        (-1.5, "positive"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        ("0.5", "number"),
        (True, "number"),
        (None, "number"),
        ([1.0], "number"),
        (np.array([1.0, 2.0]), "number"),
        ({"a": 1}, "number"),
    ],
)
def test_non_positive_or_non_numbers_name_file_and_field(value, word):
    with pytest.raises(SlideError) as info:
        positive_number(value, "/x/scalefactors_json.json", "tissue_lowres_scalef")
    msg = str(info.value)
    assert msg.startswith("/x/scalefactors_json.json: tissue_lowres_scalef must be") and word in msg
    assert "\n" not in msg


def test_optional_and_mapping():
    assert optional_positive_number(None, "f", "x") is None
    assert as_mapping(None, "f", "x") == {}
    assert as_mapping({"a": 1}, "f", "x") == {"a": 1}
    with pytest.raises(SlideError, match="x must be a mapping"):
        as_mapping("nope", "f", "x")
    with pytest.raises(SlideError, match="mapping"):
        as_mapping(None, "f", "x", optional=False)


def test_grid_extent_rule(read_shared):
    # every real shared slide passes, and so does a sparse but plausible one (two spots in opposite corners)
    for name in ("visium_mouse_brain", "st_mouse_olfactory_bulb", "her2st_C2"):
        s = read_shared(name)
        check_grid_extent(s.array_row, s.array_col, s.source)
    check_grid_extent(np.array([0, 77]), np.array([0, 127]), "f")
    side = int(np.sqrt(GRID_CELLS_FREE))
    check_grid_extent(np.array([0, side - 1]), np.array([0, side - 1]), "f")  # within the free allowance
    with pytest.raises(SlideError, match="far more than the spots can fill"):
        check_grid_extent(np.array([0, 10**9, 3]), np.array([0, 5, 3]), "f")


def test_output_path_checks(tmp_path):
    (tmp_path / "file").write_text("x")
    assert check_output_path(tmp_path / "o.h5ad") == tmp_path / "o.h5ad"
    assert list(tmp_path.iterdir()) == [tmp_path / "file"]  # the writability probe is removed
    for bad, needle in [
        (tmp_path / "missing" / "o.h5ad", "does not exist"),
        (tmp_path / "file" / "o.h5ad", "is not a folder"),
        (tmp_path, "is a folder"),
        ("/proc/o.h5ad", "cannot create files"),
        ("", "give a file name"),
    ]:
        with pytest.raises(SlideError, match=needle):
            check_output_path(bad, option="--out")
    with pytest.raises(SlideError, match="refusing to overwrite"):
        check_output_path(tmp_path / "file", inputs=[tmp_path / "file"])
    assert not (tmp_path / "missing").exists()


def test_write_outputs_all_or_nothing_with_umask_modes(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"

    def fail(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(SlideError, match="b.txt: cannot write the output .No space left"):
        write_outputs([(a, lambda t: t.write_text("A")), (b, fail)])
    assert list(tmp_path.iterdir()) == []
    old = os.umask(0o077)
    try:
        write_outputs([(a, lambda t: t.write_text("A")), (b, lambda t: t.write_text("B"))])
    finally:
        os.umask(old)
    assert a.read_text() == "A" and b.read_text() == "B"
    assert stat.S_IMODE(a.stat().st_mode) == 0o600  # 0666 & ~0077: what open() would give
    b.chmod(0o644)
    atomic_write(b, lambda t: t.write_text("B2"))
    assert b.read_text() == "B2" and stat.S_IMODE(b.stat().st_mode) == 0o644  # an overwrite keeps the mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]
