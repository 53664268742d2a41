"""``napari-s2s session create|stats`` and ``napari-s2s report`` end to end on real results, and
their bad input (one line on stderr naming the file, exit code 2, nothing written)."""

from __future__ import annotations

import json

from napari_s2s.cli import main
from napari_s2s.core.review.answers import ReaderAnswers, load_readers
from napari_s2s.core.review.session import ReviewSession
from napari_s2s.core.review.stats import format_summary, merge


def _one_line_error(capsys, *names):
    err = capsys.readouterr().err.strip()
    assert err.startswith("napari-s2s: error: ") and "\n" not in err and "Traceback" not in err
    for n in names:
        assert str(n) in err, err
    return err


def test_create_stats_report(review_results, tmp_path, capsys):
    out = tmp_path / "s.json"
    pair = f"{review_results['gaussian']},{review_results['he_gaussian']}"
    rc = main(
        [
            "session",
            "create",
            str(review_results["slide"]),
            "--compare",
            pair,
            "--genes",
            "ERBB2,SCD,IGHM",
            "--names",
            "plain,H&E",
            "--seed",
            "5",
            "--out",
            str(out),
        ]
    )
    assert rc == 0 and "wrote" in capsys.readouterr().err
    s = ReviewSession.load(out)
    assert s.arm_names == ["plain", "H&E"] and s.seed == 5 and s.genes == ["ERBB2", "SCD", "IGHM"]
    for name, choices in (("A", ["left", "left", "cant_tell"]), ("B", ["right", "left", "left"])):
        r = ReaderAnswers.open(s, name)
        for g, c in zip(r.genes, choices):
            r.answer(g, c, score_right=2)
    # stats: the same numbers as the merge the dock and the report use
    rc = main(["session", "stats", str(out), "--json", str(tmp_path / "stats.json")])
    printed = capsys.readouterr().out
    summary = merge(s, load_readers(s))
    assert rc == 0 and printed == format_summary(summary)
    assert json.loads((tmp_path / "stats.json").read_text()) == json.loads(json.dumps(summary))
    assert "Cohen's kappa" in printed
    rc = main(["session", "stats", str(out), str(s.answers_dir / "a.json")])  # one reader given explicitly
    assert rc == 0 and "agreement: needs two readers" in capsys.readouterr().out
    rc = main(["report", str(out), "--out", str(tmp_path / "r.html"), "--quiet"])
    assert rc == 0 and (tmp_path / "r.html").read_text(encoding="utf-8").count('class="gene"') == 3


def test_bad_input(review_results, tmp_path, capsys):
    slide = review_results["slide"]
    out = tmp_path / "s.json"
    rc = main(
        [
            "session",
            "create",
            str(slide),
            "--compare",
            f"{review_results['gaussian']},{review_results['he_gaussian']}",
            "--genes",
            "ERBB2,GRB7",
            "--out",
            str(out),
        ]
    )
    assert rc == 2 and not out.exists()
    _one_line_error(capsys, review_results["gaussian"], "GRB7")
    rc = main(["session", "stats", str(slide)])  # a slide is not a session
    assert rc == 2
    _one_line_error(capsys, slide, "not a napari-s2s review session")
    rc = main(
        ["session", "create", str(slide), "--holdout", "gaussian", "--genes", "top:2", "--out", str(out), "--quiet"]
    )
    assert rc == 0
    capsys.readouterr()
    before = out.read_bytes()
    rc = main(["session", "create", str(slide), "--holdout", "gaussian", "--out", str(out)])
    assert rc == 2 and out.read_bytes() == before
    _one_line_error(capsys, out, "exists already")
    rc = main(["session", "stats", str(out)])
    assert rc == 2
    _one_line_error(capsys, out, "no answers yet")
    # a reader file of another session
    other = tmp_path / "other.json"
    assert (
        main(
            [
                "session",
                "create",
                str(slide),
                "--holdout",
                "nearest",
                "--genes",
                "top:2",
                "--out",
                str(other),
                "--quiet",
            ]
        )
        == 0
    )
    foreign = ReaderAnswers.open(ReviewSession.load(other), "Z").path
    capsys.readouterr()
    rc = main(["session", "stats", str(out), str(foreign)])
    assert rc == 2
    _one_line_error(capsys, foreign, "another session")
    rc = main(["report", str(out), str(foreign), "--out", str(tmp_path / "r.html")])
    assert rc == 2 and not (tmp_path / "r.html").exists()
    _one_line_error(capsys, foreign)
    rc = main(["report", str(out), "--out", str(out)])
    assert rc == 2 and out.read_bytes() == before
    _one_line_error(capsys, out, "is an input")


def test_create_takes_the_reading_options(review_results, tmp_path, capsys):
    """``session create --pitch-um / --bin-um / --bin-from``: the slide is read that way, and the
    session keeps it for the readers; a bad bin size is one line."""
    out = tmp_path / "r.json"
    slide = str(review_results["slide"])
    args = ["session", "create", slide, "--methods", "gaussian,nearest", "--genes", "SCD", "--quiet", "--out"]
    assert main(args + [str(out), "--pitch-um", "120"]) == 0, capsys.readouterr().err
    assert json.loads(out.read_text())["slide"]["reading"] == {"pitch_um": 120.0}
    capsys.readouterr()
    assert main(args + [str(tmp_path / "b.json"), "--bin-um", "0"]) == 2
    _one_line_error(capsys, "bin size must be a positive number")
    assert not (tmp_path / "b.json").exists()


def test_create_checks_its_settings_before_any_work(review_results, tmp_path, capsys):
    """A bad --budget or --seed is one line and exit 2 before a method runs (a NaN budget used to
    surface as an internal error after the first arm; 0 meant 120 s; seed -1 made a session no reader
    could open); a result compared with itself is refused."""
    slide = review_results["slide"]
    out = tmp_path / "s.json"
    base = ["session", "create", str(slide), "--methods", "gaussian,s2s", "--genes", "top:2", "--out", str(out)]
    for extra, says in (
        (["--budget", "nan"], "--budget"),
        (["--budget", "0"], "--budget"),
        (["--budget", "-1"], "--budget"),
        (["--seed", "-1"], "--seed"),
    ):
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0] and "internal error" not in err[0], err
        assert not out.exists() and not (tmp_path / "s_maps").exists()
    same = str(review_results["gaussian"])
    assert main(["session", "create", "--compare", f"{same},{same}", "--out", str(out)]) == 2
    _one_line_error(capsys, review_results["gaussian"], "same result twice")
