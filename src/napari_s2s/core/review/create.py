"""Making a review session: from two result files, from two methods run now, or from a hold-out run.

- :func:`create_session` with ``compare=[A.h5ad, B.h5ad]``: two napari-s2s results of the slide
  (``napari-s2s impute``, the dock's Save, ...).
- ``methods=["s2s", "gaussian"]``: each method imputes the slide's x2 dense grid now
  (:func:`dense_adata`; ``s2s`` and ``s2s-he`` through the engine exactly as ``napari-s2s impute``, with
  and without H&E guidance; other registered methods predict the dense positions from every
  measured spot); the results are written beside the session (``<session>_maps/<method>.h5ad``), so
  that reading is instant.
- ``holdout=["s2s"]``: the hold-out protocol (:mod:`napari_s2s.core.evaluation.benchmark`) on the
  slide; readers compare the method's prediction of the hidden 3/4 of the spots with what was
  measured there (``holdout=["s2s", "gaussian"]``: two methods' predictions). The per-gene metrics
  go into the session for the report.

Nothing is computed before the inputs are checked, and nothing existing is overwritten unless asked.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..data.slide import Slide
from ..errors import SessionError, SlideError
from .files import slide_reading, stored_path
from .maps import HOLDOUT_KEY, read_result
from .session import Arm, ReviewSession, arm_file

#: Methods imputed through the S2S engine (as ``napari-s2s impute``), with their H&E mode.
ENGINE_METHODS = {"s2s": "off", "s2s-he": "on"}


@dataclass
class MethodConfig:
    """Provenance of maps made by a method other than the S2S engine (``uns['s2s']['config']``)."""

    method: str
    seed: int = 0
    budget_s: float | None = None
    device: str = "cpu"
    options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["options"] = {str(k): str(v) for k, v in self.options.items()}
        return d


def _say(progress: Callable[[str], None] | None, msg: str) -> None:
    if progress is not None:
        progress(msg)


# ---------------------------------------------------------------------- dense maps of a method
def dense_adata(
    slide: Slide, genes: list[str], method: str, seed: int = 0, budget_s: float | None = None, threads: int | None = 1
):
    """The x2 dense grid of ``slide`` imputed by ``method``, as a napari-s2s result AnnData.

    ``s2s`` / ``s2s-he``: the S2S engine (``fast`` preset) as ``napari-s2s impute`` runs it. Any other
    registered method: an :class:`~napari_s2s.core.methods.ImputationTask` whose measured spots are all
    the slide's usable spots and whose targets are the dense positions between them (in array
    coordinates, halves), so distance-based and H&E methods see the slide at its true scale; the
    measured values are kept exactly at measured positions.
    """
    from ..methods import METHODS, ImputationTask, histology_view, load_all
    from ..s2s.impute import dense_positions
    from ..s2s.results import ImputedResult

    t0 = time.perf_counter()
    if method in ENGINE_METHODS:
        from ..s2s.engine import S2SConfig, S2SImputer

        cfg = S2SConfig.from_preset(
            "fast",
            budget_s=120.0 if budget_s is None else budget_s,
            seed=seed,
            device="cpu",
            threads=threads,
            histology=ENGINE_METHODS[method],
        )
        imp = S2SImputer(cfg)
        for _ in imp.fit_iter(slide, genes):
            pass
        result = imp.impute(slide, genes)
        adata = result.to_anndata(slide, cfg, time.perf_counter() - t0, device="cpu")
        adata.uns["s2s"]["method"] = method
        return adata
    load_all()
    if method not in METHODS:
        raise SlideError(None, f"unknown method {method!r} (available: {', '.join(sorted(METHODS))})")
    use = slide.usable()
    rows, cols = slide.array_row[use], slide.array_col[use]
    values = slide.lognorm(list(genes)).astype(np.float32)
    dr, dc = dense_positions(rows, cols, slide.kind)
    key = dr * (4 * (int(dc.max()) + 4)) + dc
    meas_key = 2 * rows * (4 * (int(dc.max()) + 4)) + 2 * cols
    measured = np.isin(key, meas_key)
    all_meas = slide.lognorm_sparse()
    detected = np.flatnonzero(np.asarray((all_meas > 0).sum(axis=0)).ravel() / max(1, all_meas.shape[0]) >= 0.10)
    task = ImputationTask(
        kind=slide.kind,
        measured_rows=rows.copy(),
        measured_cols=cols.copy(),
        measured_values=values.copy(),
        genes=tuple(genes),
        target_rows=dr[~measured] / 2.0,
        target_cols=dc[~measured] / 2.0,
        measured_all_genes=all_meas[:, detected].tocsr(),
        histology=histology_view(slide),
        seed=int(seed),
        budget_s=budget_s,
        extra={"slide_name": slide.name, "all_genes": tuple(str(g) for g in slide.genes[detected])},
    )
    if getattr(METHODS[method], "needs_histology", False) and task.histology is None:
        raise SlideError(slide.source, f"method {method} needs an H&E image with pixel positions")
    try:
        pred = np.asarray(METHODS[method]().predict(task), dtype=np.float32)
    except (TypeError, ValueError, IndexError) as exc:
        raise SlideError(slide.source, f"method {method} cannot impute the dense grid ({exc})") from None
    out = np.empty((len(dr), len(genes)), np.float32)
    order = np.argsort(meas_key)
    out[measured] = values[order[np.searchsorted(meas_key[order], key[measured])]]
    out[~measured] = np.maximum(pred, 0.0)
    g2p = slide.geometry.grid_to_px
    xy = None
    if g2p is not None:
        from ..data.lattice import apply_affine

        xy = apply_affine(g2p, dr / 2.0, dc / 2.0)
    result = ImputedResult(
        genes=list(genes),
        dense_rows=dr,
        dense_cols=dc,
        measured=measured,
        values=out,
        xy_px=xy,
        kind=slide.kind,
        grid_to_world=slide.geometry.grid_to_world(),
        units=slide.geometry.units,
    )
    adata = result.to_anndata(slide, MethodConfig(method, seed, budget_s), time.perf_counter() - t0, device="cpu")
    adata.uns["s2s"]["method"] = method
    return adata


# ---------------------------------------------------------------------- hold-out maps
def holdout_run(
    slide: Slide,
    genes: list[str] | None,
    methods: list[str],
    seed: int = 0,
    budget_s: float | None = None,
    n_genes: int = 30,
    progress=None,
) -> dict:
    """Run the hold-out protocol for ``methods`` on ``slide``.

    Returns
    -------
    dict
        ``genes``, ``measured_mask`` (over usable spots), ``values`` (method -> (n_usable, G): the
        measured values at measured spots, the prediction at hidden ones), ``metrics`` (method ->
        gene -> ``pcc``, ``rmse``, ``mae``, ``ssim``), ``seconds`` (method -> s), ``n_measured``,
        ``n_hidden``.
    """
    from ..evaluation.benchmark import build_holdout, run_method, score

    task, truth, meta = build_holdout(slide, genes=genes, n_genes=n_genes, seed=seed, budget_s=budget_s)
    mask = meta["measured_mask"]
    out = {
        "genes": list(meta["genes"]),
        "measured_mask": mask,
        "values": {},
        "metrics": {},
        "seconds": {},
        "n_measured": int(meta["measured"]),
        "n_hidden": int(meta["hidden"]),
    }
    for name in methods:
        _say(progress, f"hold-out: {name} predicts {meta['hidden']} hidden spots from {meta['measured']} measured")
        opts = {"threads": 1} if name in ENGINE_METHODS else {}
        pred, seconds, _ = run_method(name, task, **opts)
        full = np.empty((len(mask), len(task.genes)), np.float32)
        full[mask] = task.measured_values
        full[~mask] = pred
        out["values"][name] = full
        out["metrics"][name] = score(task, truth, pred, meta)
        out["seconds"][name] = round(float(seconds), 2)
    return out


def holdout_adata(slide: Slide, run: dict, method: str, seed: int, budget_s: float | None):
    """A method's hold-out prediction as an AnnData over the slide's usable spots (``uns['s2s_holdout']``)."""
    import anndata as ad
    import pandas as pd

    from ... import __version__

    use = slide.usable()
    obs = pd.DataFrame(
        {
            "s2s_heldout": ~run["measured_mask"],
            "array_row": slide.array_row[use].astype(np.int64),
            "array_col": slide.array_col[use].astype(np.int64),
        },
        index=pd.Index(slide.barcodes[use].astype(str)),
    )
    adata = ad.AnnData(
        X=run["values"][method].astype(np.float32), obs=obs, var=pd.DataFrame(index=pd.Index(run["genes"]))
    )
    if slide.pixel_xy is not None:
        adata.obsm["spatial"] = np.asarray(slide.pixel_xy[use], np.float64)
    adata.uns[HOLDOUT_KEY] = {
        "version": __version__,
        "method": method,
        "seed": int(seed),
        "budget_s": -1.0 if budget_s is None else float(budget_s),
        "seconds": run["seconds"][method],
        "source": str(slide.source or ""),
        "measured": run["n_measured"],
        "hidden": run["n_hidden"],
        "values": "log-normalised; measured spots (1/4 sub-lattice) as measured, hidden spots predicted",
    }
    return adata


# ---------------------------------------------------------------------- sessions
def create_session(
    out: str | Path,
    slide: str | Path | None = None,
    *,
    compare: list[str | Path] | None = None,
    methods: list[str] | None = None,
    holdout: list[str] | None = None,
    genes: list[str] | str | None = None,
    seed: int = 0,
    budget_s: float | None = 60.0,
    names: list[str] | None = None,
    title: str = "",
    question: str | None = None,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
    reading: dict | None = None,
) -> ReviewSession:
    """Make a session file (and, for ``methods`` / ``holdout``, its maps) at ``out``.

    Parameters
    ----------
    out
        Session file to write (``.json``); its maps go to ``<stem>_maps/`` beside it.
    slide
        The slide (Space Ranger ``outs/`` or ``.h5ad``); with ``compare``, defaults to the slide the
        first result was imputed from (its provenance).
    compare, methods, holdout
        Exactly one: two result files; two method names; or one or two method names for a hold-out
        session (one: the method against the measured values; two: the methods against each other).
    genes
        Gene names, or ``"top:N"`` (the N most variable; on hold-out sessions over the measured
        spots), or ``None``: the genes common to both results (``compare``), else ``top:30``.
    seed
        Seed of the methods and of every reader's random order.
    budget_s
        Training budget of learned methods (seconds).
    names
        Labels of the two arms (default: method names, or the result files' methods / stems).
    title, question
        Shown to readers (the title must not name the methods if readers are to stay blind).
    overwrite
        Replace an existing session file and maps.
    progress
        Called with one-line progress messages.
    reading
        How to read the slide (``pitch_um``, ``bin_um``, ``counts_from``: e.g. a Xenium section's bin
        size); kept in the session so that readers see the slide read the same way. Default: with
        ``compare``, how the first result's slide was read (its provenance), else the reader's defaults.

    Raises
    ------
    SessionError, SlideError
        Bad input, one line naming the file; raised before any computation, nothing written.
    """
    from ..data.io import read_slide
    from ..s2s.results import check_output_path, write_imputed

    given = [x is not None for x in (compare, methods, holdout)]
    if sum(given) != 1:
        raise SessionError(None, "give exactly one of: two result files to compare, two methods, or a hold-out method")
    if budget_s is not None and not (isinstance(budget_s, (int, float)) and np.isfinite(budget_s) and budget_s > 0):
        raise SessionError(None, f"--budget must be a finite number of seconds > 0, not {budget_s!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**32:
        raise SessionError(None, f"--seed must be a whole number from 0 to {2**32 - 1}, not {seed!r}")
    out = Path(out).expanduser()
    if out.suffix.lower() != ".json":
        raise SessionError(out, "a session file name ends in .json")
    if out.exists() and not overwrite:
        raise SessionError(out, "exists already; refusing to replace a session (readers' answers refer to it)")
    if not out.parent.is_dir():
        raise SessionError(out, f"folder {out.parent} does not exist")
    if names is not None and (len(names) != 2 or names[0] == names[1]):
        raise SessionError(None, "--names takes two different labels")
    session = ReviewSession(slide={}, arms=[], genes=[], seed=int(seed), title=title)
    if question:
        session.question = question
    session.path = out
    maps_dir = session.maps_dir

    if compare is not None:
        if len(compare) != 2:
            raise SessionError(None, f"--compare takes two result files, not {len(compare)}")
        paths = [Path(p).expanduser() for p in compare]
        for p in paths:
            if not p.exists():
                raise SessionError(p, "no such result file")
        if paths[0].resolve() == paths[1].resolve():
            raise SessionError(paths[0], "--compare names the same result twice; give two different results")
        results = [read_result(p) for p in paths]
        if reading is None:
            reading = results[0].metadata["s2s"].get("reading")
        if slide is None:
            slide = results[0].metadata["s2s"].get("source") or None
            if not slide or not Path(slide).exists():
                raise SessionError(
                    paths[0],
                    f"the slide it was imputed from ({slide or 'not recorded'}) is not there; give the slide's path",
                )
        slide_path = Path(slide).expanduser()
        for p, res in zip(paths, results):
            src = str(res.metadata["s2s"].get("source") or "")
            if src and Path(src).name != slide_path.name:
                raise SessionError(p, f"a result of {Path(src).name}, not of {slide_path.name}")
        labels = _result_labels(paths, results)
        if genes is None:
            second = set(results[1].result_genes())
            genes = [g for g in results[0].result_genes() if g in second]
            if not genes:
                raise SessionError(paths[1], f"no gene in common with {paths[0].name}")
        reading = slide_reading(reading)
        gene_list = _gene_list(genes, read_slide(slide_path, **reading) if isinstance(genes, str) else None)
        for p in paths:
            read_result(p, gene_list)  # genes missing from a result: naming it
        _check_out(out, slide_path, check_output_path)
        session.arms = _rename(
            [
                Arm(labels[k], "result", arm_file(p, session.folder), _method_of(r))
                for k, (p, r) in enumerate(zip(paths, results))
            ],
            names,
        )
        session.genes = gene_list
        session.slide = _slide_entry(slide_path, session.folder, reading)
        return _finish(session, overwrite)

    if slide is None:
        raise SessionError(None, "give the slide's path")
    slide_path = Path(slide).expanduser()
    _check_out(out, slide_path, check_output_path)
    reading = slide_reading(reading)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = read_slide(slide_path, **reading)
    session.slide = _slide_entry(slide_path, session.folder, reading)

    if methods is not None:
        if len(methods) != 2 or methods[0] == methods[1]:
            raise SessionError(None, f"--methods takes two different methods, not {','.join(methods)}")
        _check_methods(methods, s)
        gene_list = _gene_list(genes or "top:30", s)
        files = [maps_dir / f"{m}.h5ad" for m in methods]
        _check_free(files, overwrite)
        adatas = []
        for m in methods:  # both first: a method that fails leaves nothing behind
            _say(progress, f"{m}: imputing {len(gene_list)} genes on the dense grid of {s.name}")
            adatas.append(dense_adata(s, gene_list, m, seed=seed, budget_s=budget_s))
        maps_dir.mkdir(parents=True, exist_ok=True)
        arms = []
        for m, f, adata in zip(methods, files, adatas):
            write_imputed(adata, f, source=slide_path)
            arms.append(Arm(m, "result", arm_file(f, session.folder), m))
        session.arms = _rename(arms, names)
        session.genes = gene_list
        return _finish(session, overwrite)

    # hold-out
    if not 1 <= len(holdout) <= 2 or len(set(holdout)) != len(holdout):
        raise SessionError(None, "--holdout takes one method (against the measured values) or two different ones")
    _check_methods(holdout, s)
    gl, n = None, 30
    if isinstance(genes, str) and genes.strip().lower().startswith("top:"):
        n = _top_n(genes)
    elif genes is not None:
        gl = _gene_list(genes, s)
    files = [maps_dir / f"holdout_{m}.h5ad" for m in holdout]
    _check_free(files, overwrite)
    run = holdout_run(s, gl, list(holdout), seed=seed, budget_s=budget_s, n_genes=n, progress=progress)
    maps_dir.mkdir(parents=True, exist_ok=True)
    arms = [] if len(holdout) == 2 else [Arm("measured", "measured")]
    for m, f in zip(holdout, files):
        write_imputed(holdout_adata(s, run, m, seed, budget_s), f, source=slide_path)
        arms.append(Arm(m, "holdout", arm_file(f, session.folder), m))
    session.arms = _rename(arms, names)
    session.genes = run["genes"]
    session.kind = "holdout"
    session.holdout = {
        "methods": list(holdout),
        "measured": run["n_measured"],
        "hidden": run["n_hidden"],
        "seconds": run["seconds"],
        "metrics": {m: _jsonable(run["metrics"][m]) for m in holdout},
    }
    return _finish(session, overwrite)


def _slide_entry(slide_path: Path, folder: Path, reading: dict) -> dict:
    """The session's slide: where it is (:func:`stored_path`) and, when not the defaults, how to read it."""
    entry = stored_path(slide_path, folder)
    if reading:
        entry["reading"] = dict(reading)
    return entry


def _finish(session: ReviewSession, overwrite: bool) -> ReviewSession:
    session.save(session.path, overwrite=overwrite)
    return session


def _check_out(out: Path, slide_path: Path, check_output_path) -> None:
    try:
        check_output_path(out, slide_path)
    except SlideError as exc:
        raise SessionError(out, exc.problem) from None


def _check_free(files: list[Path], overwrite: bool) -> None:
    for f in files:
        if f.exists() and not overwrite:
            raise SessionError(f, "exists already (maps of an earlier session?); refusing to overwrite it")


def _check_methods(methods: list[str], slide: Slide) -> None:
    from ..methods import METHODS, load_all

    load_all()
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SessionError(None, f"unknown method(s) {', '.join(unknown)} (available: {', '.join(sorted(METHODS))})")
    from ..methods import histology_view

    for m in methods:
        if (getattr(METHODS[m], "needs_histology", False) or m in ("s2s-he", "he_gaussian")) and histology_view(
            slide
        ) is None:
            raise SessionError(slide.source, f"method {m} needs an H&E image with pixel positions; this slide has none")


def _top_n(spec: str) -> int:
    try:
        n = int(spec.strip()[4:])
    except ValueError:
        raise SessionError(None, f"--genes {spec!r}: expected top:N with an integer N") from None
    if n < 1:
        raise SessionError(None, f"--genes {spec!r}: N must be >= 1")
    return n


def _gene_list(genes, slide: Slide | None) -> list[str]:
    if isinstance(genes, str):
        spec = genes.strip()
        if spec.lower().startswith("top:"):
            n = _top_n(spec)
            out = slide.top_variable_genes(n) if slide is not None else []
            if not out:
                raise SessionError(getattr(slide, "source", None), "no gene is detected in >= 10 % of the spots")
            return out
        genes = [g.strip() for g in spec.split(",") if g.strip()]
    genes = list(dict.fromkeys(str(g) for g in genes))
    if not genes:
        raise SessionError(None, "no genes given")
    if slide is not None:
        slide.gene_indices(genes)  # unknown names: SlideError with close matches
    return genes


def _method_of(res: Slide) -> str | None:
    prov = res.metadata.get("s2s", {})
    m = prov.get("method")
    if m:
        return str(m)
    cfg = prov.get("config")
    if isinstance(cfg, dict) and str(cfg.get("histology", "off")) == "on":
        return "s2s-he"
    return "s2s"


def _result_labels(paths: list[Path], results: list[Slide]) -> list[str]:
    methods = [_method_of(r) for r in results]
    if methods[0] != methods[1]:
        return methods
    stems = [p.stem for p in paths]
    return stems if stems[0] != stems[1] else [f"A ({paths[0].parent.name})", f"B ({paths[1].parent.name})"]


def _rename(arms: list[Arm], names: list[str] | None) -> list[Arm]:
    if names:
        if len(names) != 2 or names[0] == names[1]:
            raise SessionError(None, "--names takes two different labels")
        for a, n in zip(arms, names):
            a.name = n
    return arms


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x
