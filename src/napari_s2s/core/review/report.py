"""The review report: one self-contained HTML file for the lab meeting (images embedded as PNG).

It unblinds the session: which arm is which, the summary table of :func:`.stats.merge` (preference
per gene and overall with 95 % intervals, "can't tell", mean scores, agreement), a chart of the
preferences, the hold-out metrics when the session came from a validation run, and per gene the
maps compared (H&E crop, measured, both arms, one contrast) with every reader's answer and comment.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ..errors import SessionError
from .answers import ReaderAnswers
from .files import write_atomic
from .maps import SessionMaps, load_maps
from .render import ARM_COLOURS, gene_panel, preference_chart
from .session import ReviewSession
from .stats import kappa_words, merge

CSS = (
    """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px auto;max-width:1240px;
 color:#222;padding:0 16px}
h1{font-size:24px;margin-bottom:4px} h2{font-size:19px;margin-top:32px;border-bottom:1px solid #ccc}
h3{font-size:16px;margin:18px 0 6px} .meta{color:#555;font-size:13px;line-height:1.5}
table{border-collapse:collapse;font-size:13px;margin:8px 0} th,td{padding:3px 9px;border-bottom:1px solid #e3e3e3;
 text-align:right} th{background:#f5f5f5} td.l,th.l{text-align:left} tr.overall td{font-weight:bold;
 border-top:2px solid #999} .arm0{color:%s;font-weight:bold} .arm1{color:%s;font-weight:bold}
.gene{border:1px solid #ddd;border-radius:6px;padding:6px 14px 10px;margin:14px 0;break-inside:avoid}
.gene img{max-width:100%%} .note{font-size:12px;color:#666} .none{color:#999;font-style:italic}
.key{display:inline-block;padding:1px 8px;border-radius:3px;color:white;font-size:12px}
"""
    % ARM_COLOURS
)


def _esc(x) -> str:
    return html.escape("" if x is None else str(x))


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _pct(x) -> str:
    return "&ndash;" if x is None else f"{100 * x:.0f}&thinsp;%"


def _ci(rec) -> str:
    lo, hi = rec["ci95"]
    return "" if lo is None else f' <span class="note">[{100 * lo:.0f}&ndash;{100 * hi:.0f}]</span>'


def _num(x, nd=2) -> str:
    return "&ndash;" if x is None else f"{x:.{nd}f}"


def _arm(name: str, k: int) -> str:
    return f'<span class="arm{k}">{_esc(name)}</span>'


def summary_table(summary: dict) -> str:
    """The per-gene and overall statistics as an HTML table."""
    arms = summary["arms"]
    head = (
        '<tr><th class="l">gene</th><th>answers</th>'
        + "".join(f"<th>prefer {_arm(a, k)} [95&thinsp;% CI]</th>" for k, a in enumerate(arms))
        + "<th>can&rsquo;t tell</th><th>p</th>"
        + "".join(f"<th>score {_arm(a, k)}</th>" for k, a in enumerate(arms))
        + "<th>readers agreeing</th></tr>"
    )

    def row(name_html, rec, agree, cls=""):
        return (
            f'<tr class="{cls}"><td class="l">{name_html}</td><td>{rec["n"]}</td>'
            + "".join(f"<td>{_pct(rec['prefer'][a]['share'])}{_ci(rec['prefer'][a])}</td>" for a in arms)
            + f"<td>{_pct(rec['cant_tell']['share'])}</td><td>{_num(rec['p_value'], 3)}</td>"
            + "".join(f"<td>{_num(rec['mean_score'][a]['mean'], 1)}</td>" for a in arms)
            + f"<td>{_pct(agree)}</td></tr>"
        )

    rows = [
        row(f'<a href="#gene-{_esc(g)}">{_esc(g)}</a>', rec, rec["agreement"]) for g, rec in summary["per_gene"].items()
    ]
    body = "".join(rows) + row("overall", summary["overall"], summary["agreement"]["observed"], "overall")
    return f"<table>{head}{body}</table>"


def agreement_text(summary: dict) -> str:
    ag = summary["agreement"]
    if ag["statistic"] is None:
        return "Agreement between readers needs two readers or more."
    name = "Cohen&rsquo;s" if ag["statistic"] == "cohen" else "Fleiss&rsquo;"
    k = "undefined" if ag["kappa"] is None else f"{ag['kappa']:.2f}"
    return (
        f"Agreement between the {ag['readers']} readers on the {ag['genes']} genes they all answered: "
        f"{name} kappa <b>{k}</b> ({kappa_words(ag['kappa'])}, Landis &amp; Koch), "
        f"pairs of readers agreeing {_pct(ag['observed'])}."
    )


def holdout_table(session: ReviewSession) -> str:
    """Per-gene hold-out metrics of the methods of a validation session (empty for other sessions)."""
    h = session.holdout or {}
    metrics = h.get("metrics") or {}
    if not metrics:
        return ""
    methods = list(metrics)
    keys = ("pcc", "rmse", "ssim")
    head = (
        '<tr><th class="l">gene</th>'
        + "".join(f"<th>{k.upper()} {_esc(m)}</th>" for m in methods for k in keys)
        + "</tr>"
    )
    body = "".join(
        f'<tr><td class="l">{_esc(g)}</td>'
        + "".join(f"<td>{_num((metrics[m].get(g) or {}).get(k), 3)}</td>" for m in methods for k in keys)
        + "</tr>"
        for g in session.genes
    )
    return (
        "<h2>Hold-out metrics</h2>"
        f'<p class="meta">The maps came from a validation run: {h.get("measured", "?")} spots (a 1/4 sub-lattice) '
        f"were given to the method(s), which predicted the {h.get('hidden', '?')} hidden ones; the numbers score "
        "those predictions against what was measured there (Pearson r, RMSE in log-normalised units, SSIM).</p>"
        f"<table>{head}{body}</table>"
    )


def answers_table(summary: dict, gene: str) -> str:
    arms = summary["arms"]
    rec = summary["per_gene"][gene]
    if not rec["answers"]:
        return '<p class="none">no answers yet</p>'
    head = (
        '<tr><th class="l">reader</th><th class="l">preferred</th><th class="l">shown on the left</th>'
        + "".join(f"<th>score {_arm(a, k)}</th>" for k, a in enumerate(arms))
        + '<th class="l">comment</th></tr>'
    )
    body = ""
    for a in rec["answers"]:
        pref = "can&rsquo;t tell" if a["preferred"] is None else _arm(a["preferred"], arms.index(a["preferred"]))
        body += (
            f'<tr><td class="l">{_esc(a["reader"])}</td><td class="l">{pref}</td>'
            f'<td class="l">{_esc(a["shown_left"])}</td>'
            + "".join(f"<td>{_esc(a['score'][x]) or '&ndash;'}</td>" for x in arms)
            + f'<td class="l">{_esc(a["comment"])}</td></tr>'
        )
    return f"<table>{head}{body}</table>"


def build_report(
    session: ReviewSession,
    readers: list[ReaderAnswers],
    maps: SessionMaps | None = None,
    progress: Callable[[str], None] | None = None,
) -> str:
    """The report's HTML (see the module docstring)."""
    from ... import __version__

    maps = maps or load_maps(session)
    summary = merge(session, readers)
    arms = summary["arms"]
    slide = maps.slide
    title = session.title or f"{arms[0]} vs {arms[1]} on {slide.name}"
    key = " &nbsp; ".join(
        f'<span class="key" style="background:{ARM_COLOURS[k]}">{_esc(a)}</span> ({_esc(session.arms[k].kind)}'
        + (f", {_esc(session.arms[k].method)}" if session.arms[k].method and session.arms[k].method != a else "")
        + ")"
        for k, a in enumerate(arms)
    )
    reader_list = (
        ", ".join(f"{_esc(r['reader'])} ({r['answered']}/{r['of']})" for r in summary["readers"]) or "none yet"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_esc(title)} &mdash; blinded review</title><style>{CSS}</style></head><body>",
        f"<h1>Blinded review: {_esc(title)}</h1>",
        '<p class="meta">'
        f"Slide <b>{_esc(slide.name)}</b> ({_esc(slide.source)}), {len(session.genes)} genes. "
        f"Compared: {key}.<br>Readers: {reader_list}. Question asked: &ldquo;{_esc(session.question)}&rdquo;<br>"
        f"Each reader saw the two maps of each gene side by side over the H&amp;E with one contrast, names hidden, "
        f"left/right and gene order drawn at random per reader (session seed {session.seed}).<br>"
        f"Session {_esc(session.path.name if session.path else '')} (id {_esc(session.id[:8])}), "
        f"made {_esc(session.created)}.</p>",
        "<h2>Summary</h2>",
        f"<p>{agreement_text(summary)}</p>",
    ]
    if summary["overall"]["n"]:
        parts.append(_img(preference_chart(summary), "preferences per gene"))
    parts += [
        summary_table(summary),
        '<p class="note">Shares of answers with 95&thinsp;% Wilson intervals; p: two-sided binomial test of the two '
        "arms among answers that picked one (no preference: 0.5). Scores: mean 1&ndash;5 plausibility given to each "
        "arm&rsquo;s maps. Readers agreeing: share of pairs of readers who gave the same (unblinded) answer. Pooled "
        "answers are treated as independent, though each reader answered many genes.</p>",
        holdout_table(session),
        "<h2>Genes</h2>",
    ]
    labels = list(arms)
    for i, g in enumerate(session.genes):
        if progress is not None:
            progress(f"drawing {g} ({i + 1}/{len(session.genes)})")
        rec = summary["per_gene"][g]
        line = (
            f"{rec['n']} answer(s): "
            + ", ".join(f"{_arm(a, k)} {rec['prefer'][a]['n']}" for k, a in enumerate(arms))
            + f", can&rsquo;t tell {rec['cant_tell']['n']}"
        )
        metrics = ""
        for m, per in ((session.holdout or {}).get("metrics") or {}).items():
            gm = per.get(g) or {}
            metrics += f" &nbsp; hold-out {_esc(m)}: PCC {_num(gm.get('pcc'), 3)}, RMSE {_num(gm.get('rmse'), 3)}"
        parts.append(
            f'<div class="gene" id="gene-{_esc(g)}"><h3>{_esc(g)}</h3>'
            f'<p class="meta">{line}{metrics}</p>'
            f"{_img(gene_panel(maps, g, labels), 'maps of ' + g)}{answers_table(summary, g)}</div>"
        )
    parts.append(
        f'<p class="note">Made by napari-s2s {_esc(__version__)} on '
        f"{datetime.now(UTC).isoformat(timespec='seconds')}.</p></body></html>"
    )
    return "\n".join(p for p in parts if p)


def write_report(
    session: ReviewSession,
    readers: list[ReaderAnswers],
    out: str | Path,
    maps: SessionMaps | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the report to ``out`` (atomically); never over the session, an answers file or the slide."""
    out = Path(out).expanduser()
    if out.is_dir():
        raise SessionError(out, "is a folder; give a file name such as report.html")
    if not out.parent.is_dir():
        raise SessionError(out, f"folder {out.parent} does not exist")
    inputs = [session.path] + [r.path for r in readers]
    if any(p is not None and Path(p).resolve() == out.resolve() for p in inputs):
        raise SessionError(out, "is an input (the session or an answers file); choose another report name")
    text = build_report(session, readers, maps, progress)
    return write_atomic(out, text)
