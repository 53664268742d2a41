"""The hold-out benchmark protocol (design.md, "Hold-out benchmark protocol").

1. Usable spots: in tissue with at least one count, log-normalised with :meth:`Slide.lognorm`.
2. Measured: the 1/4 sub-lattice :func:`~napari_s2s.core.data.lattice.measured_mask` in absolute array
   coordinates; every other usable spot is hidden.
3. Genes: the ``n_genes`` most variable over the measured spots among genes detected in >= 10 % of
   them (:meth:`Slide.top_variable_genes`), or a given list.
4. Each method gets an :class:`~napari_s2s.core.methods.ImputationTask` that holds *only* measured
   values (fresh copies, no view on a larger array, no reference to the slide), the positions of
   the hidden spots, and the H&E when the slide has one. It predicts the hidden spots.
   ``task.extra`` holds ``slide_name`` and ``all_genes`` (the names of ``measured_all_genes``'
   columns).
5. Scores per gene on the hidden spots (:mod:`napari_s2s.core.evaluation.metrics`), medians over genes, and
   wall-clock seconds per method (training included).

:func:`build_holdout` builds one slide's task and keeps its truth apart; :func:`run_benchmark` runs
methods over many slides and returns the JSON record of the CLI contract; :func:`markdown_table`
renders it.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..data.lattice import measured_mask
from ..data.slide import Slide
from ..errors import SlideError
from ..methods import METHODS, ImputationTask, applies, histology_view, load_all
from .metrics import mae, median_or_none, pcc, rmse, ssim_grid

#: Fewer measured spots than this and the slide is refused (design.md, bad input table).
MIN_MEASURED = 16

#: Detection threshold (fraction of measured spots) for genes in ``measured_all_genes``.
MIN_DETECTED = 0.10

#: Order of methods in tables and plots; methods not listed follow alphabetically.
METHOD_ORDER = (
    "nearest",
    "linear",
    "cubic",
    "gaussian",
    "kriging",
    "pca_gaussian",
    "dist",
    "he_gaussian",
    "s2s",
    "s2s-he",
)


def _fresh(a: np.ndarray, dtype=None) -> np.ndarray:
    """A contiguous copy that owns its memory (no ``.base`` leading to a larger array)."""
    return np.array(a, dtype=dtype, copy=True, order="C")


def holdout_masks(slide: Slide, phase: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Measured and hidden masks over the usable spots (in :meth:`Slide.usable` order); ``phase``:
    which coset of the measured sub-lattice is measured (0: the benchmark's)."""
    use = slide.usable()
    measured = measured_mask(slide.array_row[use], slide.array_col[use], slide.kind, phase)
    return measured, ~measured


def build_holdout(
    slide: Slide,
    genes: list[str] | None = None,
    n_genes: int = 30,
    seed: int = 0,
    budget_s: float | None = None,
    phase: int = 0,
) -> tuple[ImputationTask, np.ndarray, dict]:
    """Build one slide's hold-out task; the truth stays out of the task.

    Parameters
    ----------
    slide
        The slide.
    genes
        Genes to score (unknown names raise :class:`SlideError`); ``None``: the ``n_genes`` most
        variable over the measured spots.
    n_genes
        How many genes when ``genes`` is ``None``.
    seed
        Seed handed to methods.
    budget_s
        Training time budget handed to learned methods.
    phase
        Which of the four cosets of the measured sub-lattice is measured (0, the default, is the
        benchmark's; 1-3 give three more tasks of the same geometry from one slide).

    Returns
    -------
    task
        The :class:`ImputationTask`: measured spots only, targets = hidden usable spots.
    truth
        (n_hidden, G) float32 true log-normalised values of the hidden spots.
    meta
        ``name``, ``path``, ``kind``, ``spots``, ``measured``, ``hidden``, ``genes`` and what scoring
        needs: ``rows``/``cols`` of all usable spots, ``measured_mask`` over them.

    Raises
    ------
    SlideError
        Fewer than :data:`MIN_MEASURED` measured spots, no hidden spot, no eligible gene, or an
        unknown gene name.
    """
    use = slide.usable()
    rows = slide.array_row[use]
    cols = slide.array_col[use]
    measured, hidden = holdout_masks(slide, phase)
    n_meas = int(measured.sum())
    if n_meas < MIN_MEASURED:
        raise SlideError(
            slide.source,
            f"too few spots to benchmark: {n_meas} measured in-tissue spots on the 1/4 lattice "
            f"(at least {MIN_MEASURED} needed)",
        )
    if not hidden.any():
        raise SlideError(slide.source, "no hidden spots to score (every usable spot is on the measured lattice)")
    if genes is None:
        genes = slide.top_variable_genes(n_genes, spots=measured, min_detected=MIN_DETECTED)
        if not genes:
            raise SlideError(slide.source, "no gene is detected in >= 10 % of the measured spots")
    genes = [str(g) for g in genes]
    slide.gene_indices(genes)  # unknown names -> SlideError with close matches

    values = slide.lognorm(genes)  # (n_usable, G), normalised over all usable spots (protocol step 1)
    all_meas = slide.lognorm_sparse(spots=measured)
    detected = np.asarray((all_meas > 0).sum(axis=0)).ravel() / n_meas >= MIN_DETECTED
    detected_idx = np.flatnonzero(detected)
    all_meas = sp.csr_matrix(all_meas[:, detected_idx], dtype=np.float32, copy=True)

    task = ImputationTask(
        kind=slide.kind,
        measured_rows=_fresh(rows[measured], np.int64),
        measured_cols=_fresh(cols[measured], np.int64),
        measured_values=_fresh(values[measured], np.float32),
        genes=tuple(genes),
        target_rows=_fresh(rows[hidden], np.int64),
        target_cols=_fresh(cols[hidden], np.int64),
        measured_all_genes=all_meas,
        histology=histology_view(slide),
        seed=int(seed),
        budget_s=budget_s,
        extra={"slide_name": slide.name, "all_genes": tuple(str(g) for g in slide.genes[detected_idx])},
    )
    truth = _fresh(values[hidden], np.float32)
    meta = {
        "name": slide.name,
        "path": slide.source,
        "kind": slide.kind,
        "phase": int(phase),
        "spots": int(use.sum()),
        "measured": n_meas,
        "hidden": int(hidden.sum()),
        "genes": list(genes),
        "rows": rows.copy(),
        "cols": cols.copy(),
        "measured_mask": measured.copy(),
    }
    return task, truth, meta


def score(task: ImputationTask, truth: np.ndarray, pred: np.ndarray, meta: dict) -> dict:
    """Per-gene PCC, RMSE, MAE (hidden spots) and SSIM (grid image) of one method's prediction.

    Returns
    -------
    dict
        ``{gene: {"pcc", "rmse", "mae", "ssim"}}`` with ``None`` where undefined.
    """
    rows, cols, measured = meta["rows"], meta["cols"], meta["measured_mask"]
    out = {}
    for g, name in enumerate(task.genes):
        t = truth[:, g].astype(np.float64)
        p = pred[:, g].astype(np.float64)
        full_t = np.empty(len(rows))
        full_t[measured] = task.measured_values[:, g]
        full_t[~measured] = t
        full_p = full_t.copy()
        full_p[~measured] = p
        out[name] = {
            "pcc": pcc(t, p),
            "rmse": rmse(t, p),
            "mae": mae(t, p),
            "ssim": ssim_grid(rows, cols, meta["kind"], full_t, full_p),
        }
    return out


def summarise(per_gene: dict, seconds: float) -> dict:
    """The per-method record of the JSON schema: medians over genes, seconds and the per-gene table."""
    rec = {}
    for key in ("pcc", "rmse", "mae", "ssim"):
        rec[f"{key}_median"] = median_or_none(v[key] for v in per_gene.values())
    rec["seconds"] = round(float(seconds), 3)
    rec["per_gene"] = per_gene
    return rec


def order_methods(names: Iterable[str]) -> list[str]:
    """Methods in :data:`METHOD_ORDER`, others after them alphabetically."""
    names = list(dict.fromkeys(names))
    known = [m for m in METHOD_ORDER if m in names]
    return known + sorted(n for n in names if n not in METHOD_ORDER)


def default_methods() -> list[str]:
    """Every registered method except ablations and controls (factories with ``ablation = True``,
    which run only when named)."""
    load_all()
    return order_methods(m for m, f in METHODS.items() if not getattr(f, "ablation", False))


def _task_copy(task: ImputationTask) -> ImputationTask:
    """A per-method copy of the task, so that one method mutating its arrays cannot affect another."""
    changes = {}
    for f in dataclasses.fields(task):
        v = getattr(task, f.name)
        if isinstance(v, np.ndarray):
            changes[f.name] = _fresh(v)
        elif sp.issparse(v):
            changes[f.name] = v.copy()
        elif isinstance(v, dict):
            changes[f.name] = dict(v)
    return dataclasses.replace(task, **changes)


def run_method(
    name: str, task: ImputationTask, *, on_method: Callable | None = None, **options
) -> tuple[np.ndarray, float, dict | None]:
    """Run one registered method on a task: ``(prediction (t, G) float64, seconds, details)``.

    ``on_method(method)``, when given, receives the method object before it predicts (the dock
    keeps it to call its ``stop()``).

    Raises
    ------
    ValueError
        When the method returns the wrong shape or non-finite values.
    """
    if name not in METHODS:
        load_all()
    method = METHODS[name](**options)
    if on_method is not None:
        on_method(method)
    t0 = time.perf_counter()
    pred = method.predict(_task_copy(task))
    seconds = time.perf_counter() - t0
    pred = np.asarray(pred, dtype=np.float64)
    want = (len(task.target_rows), len(task.genes))
    if pred.shape != want:
        raise ValueError(f"method {name!r} returned shape {pred.shape}, expected {want}")
    if not np.all(np.isfinite(pred)):
        raise ValueError(f"method {name!r} returned non-finite values")
    details = getattr(method, "details_", None)
    return pred, seconds, _jsonable(details) if details is not None else None


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return float(x) if np.isfinite(x) else None
    return x


def _say(progress: Callable[[str], None] | None, msg: str) -> None:
    if progress is not None:
        progress(msg)


def _load(path, progress, read_options: dict | None = None) -> tuple[Slide | None, dict | None]:
    """Read one slide; ``(slide, None)`` or ``(None, skipped-record)`` with a warning."""
    from ..data.io import NotASlide, is_slide_path, read_slide

    if isinstance(path, Slide):
        return path, None
    p = Path(path)
    if p.exists() and not is_slide_path(p):
        msg = f"{p}: not a slide, skipped"
        warnings.warn(msg, stacklevel=3)
        return None, {"path": str(p), "reason": "not a slide"}
    try:
        return read_slide(p, **(read_options or {})), None
    except NotASlide as exc:
        warnings.warn(f"{exc}; skipped", stacklevel=3)
        return None, {"path": str(p), "reason": "not a slide"}
    except SlideError as exc:
        warnings.warn(f"{exc}; slide skipped", stacklevel=3)
        return None, {"path": str(p), "reason": str(exc)}
    except Exception as exc:  # a reader's failure on one slide must not end a cohort's benchmark
        msg = " ".join(f"unexpected error while reading ({type(exc).__name__}: {exc})".split())[:300]
        warnings.warn(f"{p}: {msg}; slide skipped", stacklevel=3)
        return None, {"path": str(p), "reason": msg}


def run_benchmark(
    paths: Iterable,
    methods: list[str] | None = None,
    genes: list[str] | None = None,
    budget_s: float | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    n_genes: int = 30,
    method_options: dict[str, dict] | None = None,
    client=None,
    retries: int = 1,
    read_options: dict | None = None,
    phase: int = 0,
) -> dict:
    """Run the hold-out benchmark on slides and return the JSON record of the CLI contract.

    Parameters
    ----------
    paths
        Slide paths (Space Ranger ``outs/`` folders, ``.h5ad``) or :class:`Slide` objects. Paths
        that are not slides are skipped with a warning; slides that fail to read or to set up are
        reported in ``skipped`` and left out.
    methods
        Method names; ``None``: every registered method that applies to the slide, except
        ablations (:func:`default_methods`).
    genes
        Genes to score on every slide; ``None``: the ``n_genes`` most variable per slide.
    budget_s
        Training budget (seconds) for learned methods.
    seed
        Seed for every method.
    progress
        Called with one-line progress messages.
    n_genes
        Number of genes per slide when ``genes`` is ``None``.
    method_options
        Extra keyword options per method name, passed to its factory.
    client
        A Dask client (:func:`~napari_s2s.core.batch.cluster.open_client`): every (slide, method) runs as a
        task on its cluster, in parallel; the record is the same as without (metrics bit for bit for
        deterministic methods; ``seconds`` are each task's own). ``None``: one after the other, here.
    retries
        With a client: times a task whose worker died is run again.
    read_options
        Keyword options of :func:`~napari_s2s.core.data.io.read_slide` (``pitch_um``, ``bin_um``,
        ``counts_from``) for the slides given as paths.
    phase
        Which coset of the measured sub-lattice is measured (:func:`build_holdout`).

    Returns
    -------
    dict
        ``{"version", "seed", "budget_s", "phase", "slides": [...], "skipped": [...]}``; each slide has
        ``name``, ``path``, ``lattice``, ``spots``, ``measured``, ``hidden``, ``genes`` and
        ``methods`` (name -> ``pcc_median``, ``rmse_median``, ``mae_median``, ``ssim_median``,
        ``seconds``, ``per_gene``; ``error`` instead when the method failed).

    Raises
    ------
    ValueError
        An unknown method name.
    """
    return run_benchmarks(
        paths,
        [seed],
        methods=methods,
        genes=genes,
        budget_s=budget_s,
        progress=progress,
        n_genes=n_genes,
        method_options=method_options,
        client=client,
        retries=retries,
        read_options=read_options,
        phase=phase,
    )[0]


def run_benchmarks(
    paths: Iterable,
    seeds: list[int],
    methods: list[str] | None = None,
    genes: list[str] | None = None,
    budget_s: float | None = None,
    progress: Callable[[str], None] | None = None,
    n_genes: int = 30,
    method_options: dict[str, dict] | None = None,
    client=None,
    retries: int = 1,
    read_options: dict | None = None,
    phase: int = 0,
) -> list[dict]:
    """:func:`run_benchmark` for several seeds at once: one record per seed, in the order of ``seeds``.

    Each slide is read and its hold-out task built once (they do not depend on the seed); every
    (slide, method, seed) is one unit of work, all of them in parallel when a Dask ``client`` is given.
    Other parameters as :func:`run_benchmark`.
    """
    from ... import __version__

    load_all()
    if methods is not None:
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise ValueError(
                f"unknown method(s): {', '.join(unknown)} (available: {', '.join(order_methods(METHODS))})"
            )
    method_options = method_options or {}
    seeds = [int(x) for x in seeds]
    tag = (lambda sd: f"seed {sd}: ") if len(seeds) > 1 else (lambda sd: "")
    calls: dict = {}
    results = [
        {"version": __version__, "seed": sd, "budget_s": budget_s, "phase": int(phase), "slides": [], "skipped": []}
        for sd in seeds
    ]
    for path in paths:
        slide, skipped = _load(path, progress, read_options)
        if slide is None:
            for result in results:
                result["skipped"].append(skipped)
            continue
        try:
            task, truth, meta = build_holdout(
                slide, genes=genes, n_genes=n_genes, seed=seeds[0], budget_s=budget_s, phase=phase
            )
        except SlideError as exc:
            warnings.warn(f"{exc}; slide skipped", stacklevel=2)
            for result in results:
                result["skipped"].append({"path": str(slide.source), "reason": str(exc)})
            continue
        names = order_methods(methods if methods is not None else default_methods())
        run_names = [m for m in names if applies(m, task)]
        not_applicable = [m for m in names if m not in run_names]
        if not_applicable and methods is not None:  # asked for by name: say why it is missing from the table
            warnings.warn(
                f"{meta['name']}: {', '.join(not_applicable)} not run: the slide has no usable H&E image",
                stacklevel=2,
            )
        _say(
            progress, f"{meta['name']}: {meta['spots']} spots, {meta['measured']} measured, {len(meta['genes'])} genes"
        )
        shared = client.scatter([truth, meta], hash=False) if client is not None else None
        for k, sd in enumerate(seeds):
            rec = {
                "name": meta["name"],
                "path": meta["path"],
                "lattice": meta["kind"],
                "spots": meta["spots"],
                "measured": meta["measured"],
                "hidden": meta["hidden"],
                "genes": meta["genes"],
                "methods": {},
            }
            if not_applicable:
                rec["not_applicable"] = not_applicable
            task_k = dataclasses.replace(task, seed=sd)
            if client is None:
                for name in run_names:
                    m = evaluate_method(name, task_k, truth, meta, method_options.get(name, {}))
                    _store(rec, name, m, progress, prefix=tag(sd))
            else:  # on the cluster: the slide's data sent once, then one task per (method, seed)
                task_f = client.scatter(task_k, hash=False)
                rec["methods"] = dict.fromkeys(run_names)  # the serial order, filled in as tasks finish
                for name in run_names:
                    calls[(k, len(results[k]["slides"]), name)] = (
                        f"benchmark-{meta['name']}-{name}-seed{sd}",
                        evaluate_method,
                        (name, task_f, *shared, method_options.get(name, {})),
                    )
            results[k]["slides"].append(rec)
    if calls:
        from ..batch.cluster import run_tasks

        for (k, i, name), ok, m in run_tasks(client, calls, retries=retries):
            rec = results[k]["slides"][i]
            _store(rec, name, m if ok else {"error": m}, progress, prefix=f"{tag(seeds[k])}{rec['name']}: ")
    return results


def evaluate_method(name: str, task: ImputationTask, truth: np.ndarray, meta: dict, options: dict) -> dict:
    """One method on one slide's hold-out task, scored: its record in the JSON, or ``{"error": one line}``.

    The unit of work of :func:`run_benchmark`, in this process or as a task on a Dask cluster.
    """
    try:
        pred, seconds, details = run_method(name, task, **options)
    except Exception as exc:  # a failing method is reported, the benchmark goes on
        return {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    m = summarise(score(task, truth, pred, meta), seconds)
    if details is not None:
        m["details"] = details
    return m


def _store(rec: dict, name: str, m: dict, progress, prefix: str = "") -> None:
    """Put a method's record into its slide's record; a warning when it failed, a progress line when not."""
    rec["methods"][name] = m
    if "error" in m:
        warnings.warn(f"{rec['name']}: method {name} failed: {m['error']}", stacklevel=3)
        return
    _say(
        progress,
        f"  {prefix}{name:<14} PCC {_fmt(m['pcc_median'])}  SSIM {_fmt(m['ssim_median'])}  {m['seconds']:.2f}s",
    )


def _fmt(x, nd: int = 3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def summary_over_slides(result: dict) -> dict:
    """Mean over slides of each method's medians and seconds: ``{method: {key: mean}}``.

    Only slides where the method ran (and the value is defined) count; ``n_slides`` says how many.
    """
    keys = ("pcc_median", "rmse_median", "mae_median", "ssim_median", "seconds")
    acc: dict[str, dict[str, list]] = {}
    for s in result["slides"]:
        for name, m in s["methods"].items():
            if "error" in m:
                continue
            d = acc.setdefault(name, {k: [] for k in keys})
            for k in keys:
                if m.get(k) is not None:
                    d[k].append(m[k])
    out = {}
    for name in order_methods(acc):
        d = acc[name]
        out[name] = {k: (float(np.mean(v)) if v else None) for k, v in d.items()}
        out[name]["n_slides"] = len(d["seconds"])
    return out


def markdown_table(result: dict) -> str:
    """Markdown: one row per slide x method (median PCC/RMSE/MAE/SSIM, seconds), then the mean over slides."""
    lines = [
        "| slide | method | PCC | RMSE | MAE | SSIM | seconds |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for s in result["slides"]:
        for name in order_methods(s["methods"]):
            m = s["methods"][name]
            if "error" in m:
                lines.append(f"| {s['name']} | {name} | failed: {m['error']} | | | | |")
                continue
            lines.append(
                f"| {s['name']} | {name} | {_fmt(m['pcc_median'])} | {_fmt(m['rmse_median'])} | "
                f"{_fmt(m['mae_median'])} | {_fmt(m['ssim_median'])} | {_fmt(m['seconds'], 2)} |"
            )
    summ = summary_over_slides(result)
    if summ:
        lines += [
            "",
            f"Mean over slides ({len(result['slides'])} slide(s); medians over genes per slide):",
            "",
            "| method | slides | PCC | RMSE | MAE | SSIM | seconds |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, d in summ.items():
            lines.append(
                f"| {name} | {d['n_slides']} | {_fmt(d['pcc_median'])} | {_fmt(d['rmse_median'])} | "
                f"{_fmt(d['mae_median'])} | {_fmt(d['ssim_median'])} | {_fmt(d['seconds'], 2)} |"
            )
    if result.get("skipped"):
        lines += ["", "Skipped: " + "; ".join(f"{k['path']} ({k['reason']})" for k in result["skipped"])]
    return "\n".join(lines) + "\n"
