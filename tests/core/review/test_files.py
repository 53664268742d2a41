"""Session files are written atomically with the mode a normal write gives, and errors stay OSErrors."""

from __future__ import annotations

import os
import stat

import pytest

from napari_s2s.core.errors import SlideError
from napari_s2s.core.review.files import write_json


def test_write_json_mode_follows_the_umask_and_errors_stay_oserror(tmp_path):
    old = os.umask(0o027)
    try:
        out = write_json(tmp_path / "s.json", {"format": "x"})
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640  # 0666 & ~0027, not mkstemp's 0600
    with pytest.raises(OSError) as info:  # the review dock reports OSError itself
        write_json(tmp_path / "missing" / "s.json", {"format": "x"})
    assert not isinstance(info.value, SlideError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]
