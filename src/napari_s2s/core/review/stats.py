"""Unblinding: several readers' answers merged into preferences, "can't tell" rates, scores and agreement.

Per gene and overall:

- preference for each arm: the share of answers that preferred it, with a 95 % Wilson score interval
  (``scipy.stats.binomtest(...).proportion_ci(method="wilson")``); the same for "can't tell";
- a two-sided binomial test of the two arms among the answers that picked one (no preference: p = 0.5);
- the mean 1-5 plausibility score of each arm's maps;
- agreement between readers: per gene, the share of pairs of readers who gave the same answer; overall,
  Cohen's kappa for two readers (genes both answered), Fleiss' kappa for three or more (genes all
  answered), on the unblinded answers (arm A / arm B / can't tell), never on left/right.

Answers pooled over genes and readers are not independent (one reader answers many genes): the
overall intervals are those of independent answers, a lower bound on the real uncertainty.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .answers import ReaderAnswers
from .session import ReviewSession

#: Confidence level of the intervals.
LEVEL = 0.95
#: Category of "can't tell" in agreement tables (arms are 0 and 1).
CANT_TELL = "cant_tell"


def wilson(k: int, n: int, level: float = LEVEL) -> tuple[float | None, float | None]:
    """Wilson score interval of a binomial proportion ``k / n`` (``(None, None)`` when ``n == 0``)."""
    if n <= 0:
        return None, None
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def binom_p(k: int, n: int) -> float | None:
    """Two-sided binomial test p-value of ``k`` successes in ``n`` against p = 0.5 (``None`` if ``n == 0``)."""
    if n <= 0:
        return None
    from scipy.stats import binomtest

    return float(binomtest(int(k), int(n), 0.5).pvalue)


def cohen_kappa(a: list, b: list) -> float | None:
    """Cohen's kappa of two raters' labels on the same subjects.

    ``(p_o - p_e) / (1 - p_e)`` with ``p_o`` the observed agreement and ``p_e = sum_k p_a(k) p_b(k)``
    the agreement expected from each rater's own label frequencies. ``None`` when undefined (no
    subject, or both raters always gave one and the same label: ``p_e = 1``).
    """
    if len(a) != len(b):
        raise ValueError("both raters must label the same subjects")
    n = len(a)
    if n == 0:
        return None
    po = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    pe = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / n**2
    if pe >= 1.0:
        return None
    return float((po - pe) / (1.0 - pe))


def fleiss_kappa(counts) -> float | None:
    """Fleiss' kappa from an (N subjects, k categories) table of how many raters chose each category.

    Every subject must have the same number ``n >= 2`` of ratings. ``P_i = (sum_j n_ij^2 - n) / (n (n - 1))``
    is subject i's agreement, ``P_bar`` their mean, ``p_j`` the share of all ratings in category j and
    ``P_e = sum_j p_j^2``; kappa ``= (P_bar - P_e) / (1 - P_e)``. ``None`` when undefined (no subject,
    or every rating in one category).
    """
    m = np.asarray(counts, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] == 0:
        return None
    n = m.sum(axis=1)
    if not np.all(n == n[0]) or n[0] < 2:
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of ratings for every subject")
    n = n[0]
    p_i = ((m**2).sum(axis=1) - n) / (n * (n - 1))
    p_bar = p_i.mean()
    p_j = m.sum(axis=0) / m.sum()
    p_e = float((p_j**2).sum())
    if p_e >= 1.0:
        return None
    return float((p_bar - p_e) / (1.0 - p_e))


def pairwise_agreement(labels: list) -> float | None:
    """Share of pairs of raters who gave the same label to one subject (``None`` with fewer than 2)."""
    n = len(labels)
    if n < 2:
        return None
    c = Counter(labels)
    return sum(v * (v - 1) for v in c.values()) / (n * (n - 1))


def _label(answer) -> object:
    p = answer.preferred
    return CANT_TELL if p is None else p


def summarise_answers(answers: list, arms: list[str]) -> dict:
    """Preferences, "can't tell", binomial test and mean scores of a list of :class:`~.answers.Answer`."""
    n = len(answers)
    prefer = {}
    for k, name in enumerate(arms):
        c = sum(a.preferred == k for a in answers)
        lo, hi = wilson(c, n)
        prefer[name] = {"n": c, "share": c / n if n else None, "ci95": [lo, hi]}
    ct = sum(a.preferred is None for a in answers)
    lo, hi = wilson(ct, n)
    decided = n - ct
    scores = {}
    for k, name in enumerate(arms):
        vals = [a.score_of(k) for a in answers if a.score_of(k) is not None]
        scores[name] = {"mean": float(np.mean(vals)) if vals else None, "n": len(vals)}
    return {
        "n": n,
        "prefer": prefer,
        "cant_tell": {"n": ct, "share": ct / n if n else None, "ci95": [lo, hi]},
        "p_value": binom_p(prefer[arms[0]]["n"], decided),
        "mean_score": scores,
    }


def merge(session: ReviewSession, readers: list[ReaderAnswers]) -> dict:
    """Unblind and merge readers' answers.

    Returns
    -------
    dict
        ``{"session", "title", "arms", "readers": [{"reader", "answered", "of"}], "overall": {...},
        "per_gene": {gene: {... , "agreement"}}, "agreement": {"statistic", "kappa", "observed",
        "genes", "readers"}}``, where each ``{...}`` is :func:`summarise_answers` (preference with
        ``ci95``, ``cant_tell``, ``p_value``, ``mean_score``). JSON-ready.
    """
    arms = session.arm_names
    for r in readers:
        if r.session_id != session.id:
            raise ValueError(f"answers of {r.reader!r} belong to another session")
    per_gene = {}
    for g in session.genes:
        ans = [r.answers[g] for r in readers if g in r.answers]
        rec = summarise_answers(ans, arms)
        rec["agreement"] = pairwise_agreement([_label(a) for a in ans])
        rec["answers"] = [
            {
                "reader": r.reader,
                "preferred": None if r.answers[g].preferred is None else arms[r.answers[g].preferred],
                "shown_left": arms[r.answers[g].left],
                "choice": r.answers[g].choice,
                "score": {arms[k]: r.answers[g].score_of(k) for k in (0, 1)},
                "comment": r.answers[g].comment,
            }
            for r in readers
            if g in r.answers
        ]
        per_gene[g] = rec
    overall = summarise_answers([a for r in readers for a in r.answers.values()], arms)
    return {
        "session": session.id,
        "title": session.title,
        "arms": arms,
        "readers": [{"reader": r.reader, "answered": r.n_answered, "of": len(r.order)} for r in readers],
        "overall": overall,
        "per_gene": per_gene,
        "agreement": agreement(session.genes, readers),
    }


def agreement(genes: list[str], readers: list[ReaderAnswers]) -> dict:
    """Kappa between readers on their unblinded answers: Cohen's for 2 readers, Fleiss' for more."""
    if len(readers) < 2:
        return {"statistic": None, "kappa": None, "observed": None, "genes": 0, "readers": len(readers)}
    common = [g for g in genes if all(g in r.answers for r in readers)]
    labels = [[_label(r.answers[g]) for r in readers] for g in common]
    observed = float(np.mean([pairwise_agreement(row) for row in labels])) if labels else None
    if len(readers) == 2:
        kappa = cohen_kappa([row[0] for row in labels], [row[1] for row in labels])
        stat = "cohen"
    else:
        cats = [0, 1, CANT_TELL]
        table = [[row.count(c) for c in cats] for row in labels]
        kappa = fleiss_kappa(table) if table else None
        stat = "fleiss"
    return {"statistic": stat, "kappa": kappa, "observed": observed, "genes": len(common), "readers": len(readers)}


def kappa_words(kappa: float | None) -> str:
    """Landis & Koch's wording of a kappa (for reports; a convention, not a test)."""
    if kappa is None:
        return "undefined"
    for bound, words in ((0.0, "poor"), (0.2, "slight"), (0.4, "fair"), (0.6, "moderate"), (0.8, "substantial")):
        if kappa <= bound:
            return words
    return "almost perfect"


def summary_columns(summary: dict) -> list[str]:
    """Headers of :func:`summary_rows`."""
    arms = summary["arms"]
    return (
        ["gene", "n"]
        + [h for a in arms for h in (f"prefer {a}", "95% CI")]
        + ["can't tell", "p"]
        + [f"score {a}" for a in arms]
        + ["agree"]
    )


def summary_rows(summary: dict) -> list[list[str]]:
    """The merged statistics as text cells, one row per gene and a last ``overall`` row: what the
    CLI prints and the dock's "Unblind" table shows."""
    arms = summary["arms"]

    def pct(x):
        return "-" if x is None else f"{100 * x:.0f}%"

    def ci(rec):
        lo, hi = rec["ci95"]
        return "-" if lo is None else f"[{100 * lo:.0f}-{100 * hi:.0f}%]"

    def row(name, rec, agree):
        return (
            [name, str(rec["n"])]
            + [c for a in arms for c in (pct(rec["prefer"][a]["share"]), ci(rec["prefer"][a]))]
            + [pct(rec["cant_tell"]["share"]), "-" if rec["p_value"] is None else f"{rec['p_value']:.3f}"]
            + ["-" if rec["mean_score"][a]["mean"] is None else f"{rec['mean_score'][a]['mean']:.1f}" for a in arms]
            + [pct(agree)]
        )

    rows = [row(g, rec, rec["agreement"]) for g, rec in summary["per_gene"].items()]
    return rows + [row("overall", summary["overall"], summary["agreement"]["observed"])]


def agreement_line(summary: dict) -> str:
    """One line on agreement between readers (kappa, its wording, over how many genes and readers)."""
    ag = summary["agreement"]
    if ag["statistic"] is None:
        return "agreement: needs two readers or more"
    name = "Cohen's" if ag["statistic"] == "cohen" else "Fleiss'"
    k = "undefined" if ag["kappa"] is None else f"{ag['kappa']:.3f}"
    who = "both readers" if ag["readers"] == 2 else f"all {ag['readers']} readers"
    return f"agreement: {name} kappa {k} ({kappa_words(ag['kappa'])}) over {ag['genes']} genes answered by {who}"


def format_summary(summary: dict) -> str:
    """The merged statistics as a plain-text table (what ``napari-s2s session stats`` prints)."""
    head = summary_columns(summary)
    rows = summary_rows(summary)
    widths = [max(len(r[c]) for r in [head, *rows]) for c in range(len(head))]

    def line(cells):
        return "  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(cells, widths)))

    rule = "-" * len(line(head))
    out = [line(head), rule] + [line(r) for r in rows[:-1]] + [rule, line(rows[-1]), ""]
    readers = ", ".join(f"{r['reader']} ({r['answered']}/{r['of']})" for r in summary["readers"]) or "none"
    out.append(f"readers: {readers}")
    out.append(agreement_line(summary))
    out.append("p: two-sided binomial test of the two arms among answers that picked one (no preference: 0.5)")
    return "\n".join(out) + "\n"
