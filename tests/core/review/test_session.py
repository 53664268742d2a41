"""Session files: round trip, paths that survive moving the folder, and bad input (one line naming
the file, nothing overwritten)."""

from __future__ import annotations

import json
import shutil

import pytest

from napari_s2s.core.errors import SessionError
from napari_s2s.core.review.create import create_session
from napari_s2s.core.review.session import FORMAT, ReviewSession


@pytest.fixture
def compare_session(review_results, tmp_path):
    """A session comparing the two shared result files, copied into ``tmp_path/study``."""
    study = tmp_path / "study"
    study.mkdir()
    a = shutil.copy(review_results["gaussian"], study / "a.h5ad")
    b = shutil.copy(review_results["he_gaussian"], study / "b.h5ad")
    return create_session(study / "s.json", review_results["slide"], compare=[a, b], title="C2 review")


def test_round_trip_and_moving_the_folder(compare_session, tmp_path):
    s = ReviewSession.load(compare_session.path)
    assert s.id == compare_session.id and s.arm_names == ["gaussian", "he_gaussian"]
    assert s.genes == ["ERBB2", "SCD", "IGHM", "FABP7"]  # the results' genes, in order
    assert s.kind == "compare" and s.title == "C2 review"
    rec = json.loads(s.path.read_text())
    assert rec["format"] == FORMAT and rec["version"] == 1
    assert rec["arms"][0]["file"]["path"] == "a.h5ad" and len(rec["arms"][0]["file"]["sha256"]) == 64
    s.check_files()
    moved = tmp_path / "elsewhere"
    shutil.move(str(tmp_path / "study"), moved)  # the whole folder moves: relative paths still work
    s2 = ReviewSession.load(moved / "s.json")
    assert s2.arm_path(s2.arms[0]) == (moved / "a.h5ad").resolve()
    s2.check_files()


def test_a_result_that_moved_or_changed_is_named(compare_session):
    folder = compare_session.path.parent
    (folder / "b.h5ad").rename(folder / "b_old.h5ad")
    with pytest.raises(SessionError) as e:
        ReviewSession.load(compare_session.path).check_files()
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(compare_session.path))
    assert "b.h5ad" in msg and "he_gaussian" in msg and "moved" in msg
    (folder / "b_old.h5ad").rename(folder / "b.h5ad")
    with open(folder / "b.h5ad", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(SessionError, match="changed since the session was made"):
        ReviewSession.load(compare_session.path).check_files()


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"\x89HDF\r\n\x1a\n binary", "not a JSON file"),
        (b'{"format": "napari-s2s-review-answers", "version": 1}', "not a napari-s2s review session"),
        (b"[1, 2]", "not a napari-s2s review session"),
        (b'{"format": "napari-s2s-review-session", "version": 9}', "newer"),
        (b'{"format": "napari-s2s-review-session", "version": 1, "id": "x", "genes": []}', "'genes'"),
    ],
)
def test_a_file_that_is_not_a_session(tmp_path, content, problem):
    p = tmp_path / "bad.json"
    p.write_bytes(content)
    with pytest.raises(SessionError) as e:
        ReviewSession.load(p)
    assert problem in str(e.value) and str(p) in str(e.value) and "\n" not in str(e.value)
    assert p.read_bytes() == content  # untouched


def test_malformed_arms(compare_session):
    rec = json.loads(compare_session.path.read_text())
    rec["arms"][1]["name"] = rec["arms"][0]["name"]
    compare_session.path.write_text(json.dumps(rec))
    with pytest.raises(SessionError, match="both arms are named"):
        ReviewSession.load(compare_session.path)
    rec["arms"] = rec["arms"][:1]
    compare_session.path.write_text(json.dumps(rec))
    with pytest.raises(SessionError, match="two arms"):
        ReviewSession.load(compare_session.path)


def test_an_existing_session_is_not_replaced(compare_session, review_results):
    before = compare_session.path.read_bytes()
    folder = compare_session.path.parent
    with pytest.raises(SessionError, match="exists already"):
        create_session(compare_session.path, review_results["slide"], compare=[folder / "a.h5ad", folder / "b.h5ad"])
    assert compare_session.path.read_bytes() == before
    with pytest.raises(SessionError, match="exists already"):
        compare_session.save(compare_session.path)
    assert compare_session.path.read_bytes() == before
