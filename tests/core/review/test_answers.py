"""Per-reader answer files: seeded placements recorded, resume by name, saved after every answer,
and files of another session refused without being touched."""

from __future__ import annotations

import json

import pytest

from napari_s2s.core.errors import SessionError
from napari_s2s.core.review.answers import ReaderAnswers, load_readers, reader_file, reader_key
from napari_s2s.core.review.session import Arm, ReviewSession


def make_session(tmp_path, name="s.json", seed=0, n=12):
    s = ReviewSession(
        slide={"path": "slide.h5ad"},
        arms=[Arm("s2s", "result", {"path": "a.h5ad"}), Arm("gaussian", "result", {"path": "b.h5ad"})],
        genes=[f"G{i}" for i in range(n)],
        seed=seed,
    )
    s.save(tmp_path / name)
    return s


def test_placements_are_random_per_reader_seeded_and_recorded(tmp_path):
    s = make_session(tmp_path)
    a = ReaderAnswers.open(s, "Dr. Ana Souza")
    b = ReaderAnswers.open(s, "Bo")
    assert a.path == tmp_path / "s_answers" / "dr-ana-souza.json" and a.path.exists()  # saved before any answer
    assert sorted(a.genes) == sorted(s.genes) and a.genes != s.genes  # a shuffled order
    assert a.order != b.order
    lefts = [left for _, left in a.order]
    assert 0 < sum(lefts) < len(lefts)  # both arms appear on the left
    rec = json.loads(a.path.read_text())
    assert [o["left"] for o in rec["order"]] == lefts
    body = json.dumps({k: v for k, v in rec.items() if k != "format"})
    assert "s2s" not in body and "gaussian" not in body  # which arm is which stays out of the reader's file
    # the same reader (any spelling of the name) gets the same file and placements
    again = ReaderAnswers.open(s, "dr ana souza")
    assert again.order == a.order
    # the same seed and name in a fresh copy of the session: the same draw
    (tmp_path / "s_answers" / "dr-ana-souza.json").unlink()
    assert ReaderAnswers.open(s, "Dr. Ana Souza").order == a.order


def test_every_answer_is_saved_and_reading_resumes(tmp_path):
    s = make_session(tmp_path, n=5)
    r = ReaderAnswers.open(s, "Reader")
    first, second = r.genes[0], r.genes[1]
    r.answer(first, "left", score_left=4, comment="  sharp\nedges ")
    on_disk = json.loads(r.path.read_text())
    assert on_disk["answers"][first]["choice"] == "left" and on_disk["answers"][first]["comment"] == "sharp edges"
    assert not list(r.path.parent.glob(".*.tmp"))  # no temporary file left behind
    r.answer(second, "cant_tell")
    back = ReaderAnswers.open(s, "reader")
    assert back.n_answered == 2 and back.next_index() == 2 and not back.done
    assert back.answers[first].preferred == back.left_arm(first)
    assert back.answers[second].preferred is None
    with pytest.raises(ValueError):
        back.answer(first, "up")
    with pytest.raises(ValueError):
        back.answer(first, "left", score_left=7)


def test_answers_of_another_session_are_refused_and_kept(tmp_path):
    s1 = make_session(tmp_path, "one.json")
    s2 = make_session(tmp_path, "two.json")
    r = ReaderAnswers.open(s1, "Reader")
    r.answer(r.genes[0], "right")
    foreign = reader_file(s2, "Reader")
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(r.path.read_bytes())  # copied into the other session's folder
    before = foreign.read_bytes()
    with pytest.raises(SessionError) as e:
        ReaderAnswers.open(s2, "Reader")
    assert str(foreign) in str(e.value) and "another session" in str(e.value) and "\n" not in str(e.value)
    assert foreign.read_bytes() == before
    with pytest.raises(SessionError, match="another session"):
        load_readers(s2, [r.path])
    not_answers = tmp_path / "x.json"
    not_answers.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(SessionError, match="not a napari-s2s reader answers file"):
        load_readers(s1, [not_answers])


def test_load_readers_from_the_folder_and_duplicates(tmp_path):
    s = make_session(tmp_path)
    ReaderAnswers.open(s, "A")
    ReaderAnswers.open(s, "B")
    assert sorted(r.reader for r in load_readers(s)) == ["A", "B"]
    dup = tmp_path / "copy.json"
    dup.write_bytes(reader_file(s, "A").read_bytes())
    with pytest.raises(SessionError, match="second answers file of reader 'A'"):
        load_readers(s, [reader_file(s, "A"), dup])
    with pytest.raises(ValueError):
        reader_key(" -- ")


def test_tampered_placements_are_refused(tmp_path):
    s = make_session(tmp_path, n=3)
    r = ReaderAnswers.open(s, "A")
    r.answer(r.genes[0], "left")
    rec = json.loads(r.path.read_text())
    rec["answers"][r.genes[0]]["left"] = 1 - rec["answers"][r.genes[0]]["left"]
    r.path.write_text(json.dumps(rec))
    with pytest.raises(SessionError, match="placement"):
        ReaderAnswers.load(r.path, s)
