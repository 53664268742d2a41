"""Unblinded statistics against values computed by hand (and textbook examples)."""

from __future__ import annotations

import pytest

from napari_s2s.core.review.answers import ReaderAnswers
from napari_s2s.core.review.session import Arm, ReviewSession
from napari_s2s.core.review.stats import (
    cohen_kappa,
    fleiss_kappa,
    format_summary,
    merge,
    pairwise_agreement,
    wilson,
)


def test_wilson_interval_by_hand():
    # 8 of 10, z = 1.959964: centre (0.8 + z^2/20) / (1 + z^2/10) = 0.716738,
    # half-width z / (1 + z^2/10) * sqrt(0.8 * 0.2 / 10 + z^2 / 400) = 0.226578
    lo, hi = wilson(8, 10)
    assert lo == pytest.approx(0.490160, abs=1e-5) and hi == pytest.approx(0.943316, abs=1e-5)
    lo, hi = wilson(4, 8)  # symmetric around 0.5: 0.5 -+ 0.284786
    assert lo == pytest.approx(0.215214, abs=1e-5) and hi == pytest.approx(0.784786, abs=1e-5)
    assert wilson(0, 0) == (None, None)


def test_cohen_kappa_textbook_example():
    # 50 subjects: both yes 20, A yes B no 5, A no B yes 10, both no 15:
    # p_o = 0.7, p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5, kappa = 0.4
    a = ["y"] * 20 + ["y"] * 5 + ["n"] * 10 + ["n"] * 15
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(["x", "x"], ["x", "x"]) is None  # p_e = 1: undefined
    assert cohen_kappa([], []) is None


def test_fleiss_kappa_textbook_example():
    # Fleiss (1971) style example: 10 subjects, 14 raters, 5 categories; kappa = 0.210
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=1e-4)
    with pytest.raises(ValueError):
        fleiss_kappa([[2, 0], [1, 0]])  # unequal numbers of ratings
    assert pairwise_agreement(["a", "a", "b"]) == pytest.approx(1 / 3)


ARMS = ("s2s", "gaussian")


@pytest.fixture
def session(tmp_path):
    s = ReviewSession(
        slide={"path": "slide.h5ad"},
        arms=[Arm("s2s", "result", {"path": "a.h5ad"}), Arm("gaussian", "result", {"path": "b.h5ad"})],
        genes=["G1", "G2", "G3", "G4"],
        seed=7,
    )
    s.path = tmp_path / "s.json"
    return s


def _read(session, name, preferred: dict, scores: dict | None = None):
    """A reader answering by *left/right* as they saw it, so that the statistics must unblind."""
    r = ReaderAnswers.open(session, name)
    for gene in r.genes:
        want = preferred[gene]
        left = r.left_arm(gene)
        choice = "cant_tell" if want is None else ("left" if ARMS.index(want) == left else "right")
        sc = (scores or {}).get(gene, {})
        r.answer(gene, choice, score_left=sc.get(ARMS[left]), score_right=sc.get(ARMS[1 - left]))
    return r


def test_merge_two_readers_by_hand(session):
    a = _read(
        session, "Reader A", {"G1": "s2s", "G2": "s2s", "G3": "gaussian", "G4": None}, {"G1": {"s2s": 4, "gaussian": 2}}
    )
    b = _read(session, "Reader B", {"G1": "s2s", "G2": "gaussian", "G3": "gaussian", "G4": "s2s"}, {"G1": {"s2s": 5}})
    s = merge(session, [a, b])
    o = s["overall"]
    assert o["n"] == 8
    assert o["prefer"]["s2s"]["n"] == 4 and o["prefer"]["s2s"]["share"] == 0.5
    assert o["prefer"]["s2s"]["ci95"] == pytest.approx([0.215214, 0.784786], abs=1e-5)
    assert o["prefer"]["gaussian"]["n"] == 3 and o["cant_tell"]["share"] == 0.125
    assert o["p_value"] == pytest.approx(1.0)  # 4 vs 3 among 7 decided
    assert o["mean_score"]["s2s"] == {"mean": 4.5, "n": 2}
    assert o["mean_score"]["gaussian"] == {"mean": 2.0, "n": 1}
    g1 = s["per_gene"]["G1"]
    assert g1["prefer"]["s2s"]["share"] == 1.0 and g1["agreement"] == 1.0
    assert g1["prefer"]["s2s"]["ci95"][0] == pytest.approx(0.342382, abs=1e-5)
    assert s["per_gene"]["G2"]["agreement"] == 0.0
    assert {x["reader"]: x["preferred"] for x in s["per_gene"]["G4"]["answers"]} == {
        "Reader A": None,
        "Reader B": "s2s",
    }
    # labels A: s2s s2s gau ct; B: s2s gau gau s2s -> p_o = 0.5; p_e = .5*.5 + .25*.5 = 0.375; kappa = 0.2
    ag = s["agreement"]
    assert ag["statistic"] == "cohen" and ag["kappa"] == pytest.approx(0.2) and ag["observed"] == 0.5
    assert ag["genes"] == 4
    text = format_summary(s)
    assert "Cohen's kappa 0.200" in text and "overall" in text


def test_merge_three_readers_fleiss_by_hand(session):
    prefs = {"G1": "s2s", "G2": "s2s", "G3": "gaussian", "G4": None}
    readers = [
        _read(session, "A", prefs),
        _read(session, "B", {"G1": "s2s", "G2": "gaussian", "G3": "gaussian", "G4": "s2s"}),
        _read(session, "C", prefs),
    ]
    # counts per gene [s2s, gaussian, can't tell]: [3,0,0] [2,1,0] [0,3,0] [1,0,2]
    # P_i = 1, 1/3, 1, 1/3 -> 2/3; p_j = 1/2, 1/3, 1/6 -> P_e = 7/18; kappa = (2/3 - 7/18) / (11/18) = 5/11
    ag = merge(session, readers)["agreement"]
    assert ag["statistic"] == "fleiss" and ag["kappa"] == pytest.approx(5 / 11)
    # a reader who has not finished: Fleiss' kappa over the genes all answered
    partial = ReaderAnswers.open(session, "D")
    partial.answer(partial.genes[0], "left")
    ag = merge(session, readers + [partial])["agreement"]
    assert ag["genes"] == 1 and ag["readers"] == 4
