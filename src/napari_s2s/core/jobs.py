"""The impute job: one slide in, one imputed ``.h5ad`` out (and, optionally, the trained model).

:func:`run_impute_job` is the single code path behind ``napari-s2s impute`` (one slide, in the
foreground) and ``napari-s2s batch`` (one task per slide on a Dask cluster), so both check the same
things, write the same file with the same provenance, and fail the same way. Every check that can fail
on bad input (settings valid, outputs writable, slide readable, enough spots, genes known, H&E present
when asked for) runs before training starts, so that nothing is trained in vain; the outputs (result
and model) are written all-or-nothing at the end, with the file modes a normal write gives
(:func:`napari_s2s.core.checks.write_outputs`).

:class:`ImputeSettings` holds what the user asked for (genes, budget, preset, ...); it is a small
picklable value that travels to cluster workers, and it says whether an existing result was made with
the same settings (:func:`result_matches`), which is how a re-run batch knows what to skip.

torch is imported only when a job runs, not when this module is imported.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .checks import (
    MAX_PITCH_UM,
    check_distinct_outputs,
    check_output_path,
    optional_positive_number,
    write_outputs,
)
from .errors import SlideError

#: Config keys that say how a job ran, not what it computes: a result made with other values of these
#: is still the result asked for.
RUNTIME_KEYS = ("device", "threads")

#: ``--genes top:N`` / lists above this many genes get a warning stating the cost.
MANY_GENES = 200

#: Fewest usable spots (in tissue, at least one count) a slide needs to be trained on.
MIN_SPOTS = 16

#: S2SConfig field -> the option that sets it (invalid settings are reported with the option's name).
OPTION_OF_FIELD = {
    "budget_s": "--budget",
    "max_steps": "--max-steps",
    "seed": "--seed",
    "threads": "--threads",
    "device": "--device",
    "preset": "--preset",
    "histology": "--histology",
    "aux_genes": "--aux-genes",
}


@dataclass(frozen=True)
class ImputeSettings:
    """What to impute and how (the options of ``napari-s2s impute`` / ``batch``).

    Attributes
    ----------
    genes
        ``"A,B,..."`` (repeats dropped) or ``"top:N"`` (the N most variable genes of each slide).
    budget
        Training time budget in seconds (``None``: no time limit, then ``max_steps`` is needed).
    max_steps
        Step limit (``None``: the budget alone); with a step limit training is deterministic for a seed.
    preset, device, seed, threads, natural, natural_folder, histology, tta
        As the :class:`~napari_s2s.core.s2s.engine.S2SConfig` fields of (nearly) the same names.
    pitch_um
        Spot pitch override handed to the reader.
    bin_um, counts_from
        Bin size in micrometres and what is binned (Xenium, SpatialData cells; Visium HD: the bin
        folder), handed to the reader.
    """

    genes: str = "top:30"
    budget: float | None = 120.0
    max_steps: int | None = None
    preset: str = "fast"
    device: str = "auto"
    seed: int = 0
    threads: int | None = None
    natural: bool = True
    natural_folder: str | None = None
    histology: str = "auto"
    tta: bool = False
    aux_genes: int | None = None  # None: the engine's default
    pitch_um: float | None = None
    bin_um: float | None = None
    counts_from: str = "auto"

    def config(self):
        """The :class:`~napari_s2s.core.s2s.engine.S2SConfig` of these settings (imports torch).

        Raises
        ------
        SlideError
            An invalid setting, named by its option (``invalid setting: --budget must be ...``).
        """
        from .s2s.engine import S2SConfig

        try:
            return S2SConfig.from_preset(
                self.preset,
                budget_s=self.budget,
                max_steps=self.max_steps,
                device=self.device,
                seed=self.seed,
                threads=self.threads,
                natural_images=self.natural,
                natural_folder=self.natural_folder,
                histology=self.histology,
                tta=self.tta,
                aux_genes=self.aux_genes,
            )
        except (TypeError, ValueError) as exc:
            msg = str(exc)
            for fld, option in OPTION_OF_FIELD.items():
                if msg.startswith(fld + " "):
                    msg = (option + msg[len(fld) :]).replace(", or None", "").replace(" or None", "")
                    break
            raise SlideError(None, f"invalid setting: {msg}") from None

    def replace(self, **changes) -> ImputeSettings:
        return dataclasses.replace(self, **changes)


@dataclass
class ImputeOutcome:
    """What a finished job wrote: the file (and model), its shape, genes, device and wall-clock seconds."""

    out: Path
    genes: list[str]
    n_obs: int
    n_measured: int
    device: str
    seconds: float
    steps: int
    model: Path | None = None


# ---------------------------------------------------------------------- checks before any work
def check_settings(settings: ImputeSettings, *, device: bool = True):
    """Every setting valid, before any slide is read; returns the config.

    Parameters
    ----------
    settings
        What to impute and how.
    device
        Also check that the device is available here (not for tasks sent to another machine's workers).

    Raises
    ------
    SlideError
        An invalid setting, a device that is not there, a ``--natural-folder`` that is not a folder, a
        bad ``--pitch-um``.
    """
    cfg = settings.config()
    if device:
        from .s2s.device import resolve_device

        resolve_device(cfg.device)
    if cfg.uses_natural and cfg.natural_folder is not None and not Path(cfg.natural_folder).is_dir():
        what = "is not a folder" if Path(cfg.natural_folder).exists() else "no such folder"
        raise SlideError(cfg.natural_folder, f"--natural-folder: {what}")
    optional_positive_number(settings.pitch_um, None, "--pitch-um", upper=MAX_PITCH_UM)
    return cfg


def is_store_output(out) -> bool:
    """Whether ``--out`` names a SpatialData ``.zarr`` store (else the result is an ``.h5ad``)."""
    return str(out).rstrip("/\\").lower().endswith(".zarr")


def check_impute_outputs(out, save_model=None, source=None, replace: bool = True) -> tuple[Path, Path | None]:
    """Before any work: ``--out`` (and ``--save-model``) can be written, differ from each other and from
    the input; ``--out`` ends in ``.h5ad`` or ``.zarr`` (the formats it is written in). See
    :func:`napari_s2s.core.checks.check_output_path` for the rule (the folder must exist; with
    ``replace`` false, existing outputs are refused). A ``.zarr`` output needs the optional spatialdata
    package (said before any work)."""
    store = is_store_output(out)
    if store:
        from .data.spatialdata_zarr import import_spatialdata

        import_spatialdata(out)
    out_p = check_output_path(out, inputs=[source], option="--out", store=store, replace=replace)
    if not store and out_p.suffix.lower() != ".h5ad":
        # an HDF5 file named .csv / .tsv / .loom, or with no suffix, would be silent garbage to whoever opens it
        what = f"not {out_p.suffix!r}" if out_p.suffix else "add the suffix"
        raise SlideError(out_p, f"--out: name a .h5ad file (AnnData) or a .zarr store (SpatialData); {what}")
    model_p = None
    if save_model is not None:
        model_p = check_output_path(save_model, inputs=[source], option="--save-model", replace=replace)
        check_distinct_outputs({"--out": out, "--save-model": save_model})
        if model_p.suffix.lower() != ".pt":
            raise SlideError(model_p, "--save-model: name a .pt file (a torch model that `S2SImputer.load` reads)")
    return out_p, model_p


def open_slide(
    path,
    *,
    sample: bool = False,
    pitch_um: float | None = None,
    bin_um: float | None = None,
    counts_from: str = "auto",
):
    """The slide at ``path`` (Space Ranger or Visium HD ``outs/``, ``.h5ad``, Xenium folder, SpatialData
    ``.zarr``), or the built-in synthetic slide."""
    pitch = optional_positive_number(pitch_um, None, "--pitch-um", upper=MAX_PITCH_UM)
    if bin_um is not None:
        from .data.binning import check_bin_um

        bin_um = check_bin_um(bin_um, path)
    if sample:
        from .data.synthetic import make_synthetic_slide

        return make_synthetic_slide()
    if not path:
        raise SlideError(
            None,
            "give a slide PATH (Space Ranger or Visium HD outs/, .h5ad, Xenium folder, SpatialData .zarr) or --sample",
        )
    from .data.io import read_slide

    return read_slide(path, pitch_um=pitch, bin_um=bin_um, counts_from=counts_from)


# ---------------------------------------------------------------------- genes
def split_gene_list(spec: str) -> list[str]:
    """``"A, B,A"`` -> ``["A", "B"]``: names in order, blanks and repeats dropped (with a warning)."""
    genes, seen, repeated = [], set(), []
    for g in (spec or "").split(","):
        g = g.strip()
        if not g:
            continue
        if g in seen:
            repeated.append(g)
            continue
        seen.add(g)
        genes.append(g)
    if repeated:
        warnings.warn(f"--genes: repeated name(s) dropped: {', '.join(dict.fromkeys(repeated))}", stacklevel=2)
    return genes


def parse_genes(spec: str, slide) -> list[str]:
    """Genes from ``A,B,...`` or ``top:N`` (the N most variable genes of the slide).

    A list is taken in order with repeats dropped; a whole ``spec`` that is itself a gene name (a name
    holding a comma) is that one gene. ``top:N`` beyond the genes detected in >= 10 % of the spots takes
    those (with a warning).
    """
    spec = (spec or "").strip()
    if spec.lower().startswith("top:"):
        try:
            n = int(spec[4:])
        except ValueError:
            raise SlideError(slide.source, f"--genes {spec!r}: expected top:N with an integer N") from None
        if n < 1:
            raise SlideError(slide.source, f"--genes {spec!r}: N must be >= 1")
        genes = slide.top_variable_genes(n)
        if not genes:
            raise SlideError(slide.source, "no gene is detected in >= 10 % of the spots")
        if len(genes) < n and n > 30:
            warnings.warn(
                f"--genes {spec}: only {len(genes)} genes are detected in >= 10 % of the spots; imputing those",
                stacklevel=2,
            )
        return genes
    if spec in set(map(str, slide.genes)):
        return [spec]
    if spec.isdigit():  # "--genes 8" meant as a number of genes
        raise SlideError(
            slide.source, f"--genes {spec}: no gene of that name; top:{spec} takes the {spec} most variable genes"
        )
    genes = split_gene_list(spec)
    if not genes:
        raise SlideError(slide.source, "--genes is empty")
    slide.gene_indices(genes)
    return genes


def _warn_cost(genes: list[str], slide, spec: str) -> None:
    """Say what many genes cost (imputation time and output size grow with the gene count)."""
    if len(genes) <= MANY_GENES:
        return
    from .data.lattice import dense_positions

    use = slide.usable()
    n_dense = len(dense_positions(slide.array_row[use], slide.array_col[use], slide.kind)[0])
    mb = n_dense * len(genes) * 4 * 2 / 1e6  # X and the s2s_model layer, float32
    warnings.warn(
        f"--genes {spec}: {len(genes)} genes, {len(genes) / 30:.0f}x the default 30: imputation after the "
        f"--budget training grows with the gene count (not part of the budget), and the output holds "
        f"{n_dense} positions x {len(genes)} genes (~{mb:,.0f} MB); a smaller N keeps it short",
        stacklevel=2,
    )


def _warn_silent(genes: list[str], slide) -> None:
    """Say which genes have no count at any measured spot: their maps are zeros (not NaN), which a
    reader of the result should know before taking them for a pattern."""
    values = slide.lognorm(genes)
    silent = [g for g, v in zip(genes, values.max(axis=0, initial=0.0)) if not v > 0]
    if silent:
        shown = ", ".join(silent[:5]) + (f" and {len(silent) - 5} more" if len(silent) > 5 else "")
        warnings.warn(
            f"--genes: {shown}: no count at any measured spot of {slide.name}; imputed as zeros", stacklevel=2
        )


# ---------------------------------------------------------------------- the job
def run_impute_job(
    path: str | Path | None,
    out: str | Path,
    settings: ImputeSettings,
    *,
    sample: bool = False,
    save_model: str | Path | None = None,
    on_event: Callable | None = None,
    replace: bool = True,
) -> ImputeOutcome:
    """The impute job: check everything, train S2S-ST, impute the x2 dense grid, write the result (and model).

    Parameters
    ----------
    path
        Slide path (Space Ranger ``outs/`` or ``.h5ad``); ignored with ``sample=True``. Never overwritten.
    out
        Output ``.h5ad``; its folder must exist.
    settings
        What to impute and how.
    sample
        Use the built-in synthetic slide.
    save_model
        Also write the trained model here (``.pt``; its folder must exist).
    on_event
        Called with every training :class:`~napari_s2s.core.events.ProgressEvent`.
    replace
        Whether existing outputs may be replaced (``batch`` redoes stale results; ``impute`` only with
        ``--force``).

    Returns
    -------
    ImputeOutcome

    Raises
    ------
    SlideError
        Bad input, found before training starts (settings, outputs, slide, genes), or an output that
        could not be written at the end (then nothing is left behind).
    """
    from .s2s.device import resolve_device
    from .s2s.engine import S2SImputer, resolve_histology

    source = None if sample else path
    cfg = check_settings(settings, device=False)
    out_p, model_p = check_impute_outputs(out, save_model, source, replace)
    device = resolve_device(cfg.device)
    slide = open_slide(
        path, sample=sample, pitch_um=settings.pitch_um, bin_um=settings.bin_um, counts_from=settings.counts_from
    )
    n_use = int(slide.usable().sum())
    if n_use < MIN_SPOTS:
        hint, read = "", slide.reading()
        if "counts_from" in read and "bin_um" in read:  # binned from cells or transcripts: smaller bins, more spots
            hint = f"; these are {read['bin_um']:g} um bins: a smaller --bin-um makes more of them"
        raise SlideError(
            slide.source,
            f"too few spots to train ({n_use} in tissue with at least one count; need {MIN_SPOTS}){hint}",
        )
    genes = parse_genes(settings.genes, slide)
    _warn_cost(genes, slide, settings.genes)
    _warn_silent(genes, slide)
    resolve_histology(cfg.histology, slide)  # "--histology on" without an image: bad input, now

    imp = S2SImputer(cfg)
    t0 = time.perf_counter()
    try:
        for ev in imp.fit_iter(slide, genes):
            if on_event is not None:
                on_event(ev)
        result = imp.impute(slide, genes)
    except SlideError as exc:
        if exc.path is None:  # the engine's array-level checks do not know the file: name it
            raise SlideError(slide.source, exc.problem) from None
        raise
    seconds = time.perf_counter() - t0
    adata = result.to_anndata(slide, cfg, seconds, device=str(device))
    adata.uns["s2s"].update(imp.provenance())  # how the result was made: base, networks' weight and why
    adata.uns["s2s"]["genes_requested"] = str(settings.genes)
    adata.uns["s2s"]["reading"] = reading_record(settings)
    if is_store_output(out_p):  # SpatialData: written to a temporary folder, then moved into place
        from .data.spatialdata_zarr import write_spatialdata

        write_spatialdata(adata, slide, out_p, source=source)
        if model_p is not None:
            write_outputs([(model_p, imp.save)])
    else:
        writers = [(out_p, lambda tmp: adata.write_h5ad(tmp))]
        if model_p is not None:
            writers.append((model_p, imp.save))
        write_outputs(writers)
    return ImputeOutcome(
        out=out_p,
        genes=list(genes),
        n_obs=int(adata.n_obs),
        n_measured=int(result.measured.sum()),
        device=str(device),
        seconds=seconds,
        steps=int(imp.stats.get("steps", 0)),
        model=model_p,
    )


# ---------------------------------------------------------------------- is a result the one asked for?
def result_matches(out: str | Path, source: str | Path, settings: ImputeSettings) -> str | None:
    """Why the result at ``out`` is *not* what ``settings`` would make from ``source``; ``None`` when it is.

    A result matches when the whole file reads back as AnnData, its provenance (``uns['s2s']``) names
    the same source, the same gene request (and, for a gene list, those genes; for ``top:N``, N
    genes), the same reading options (:func:`reading_record`: pitch, bin size, what is binned) and
    the same training config apart from :data:`RUNTIME_KEYS`, and ``X`` has one column per gene.
    """
    import anndata as ad

    out = Path(out)
    if not out.is_file():
        return "no output yet"
    try:
        adata = ad.read_h5ad(out)
    except Exception as exc:  # any read failure: the file is not a usable result
        return f"unreadable ({type(exc).__name__})"
    prov = adata.uns.get("s2s")
    if not isinstance(prov, dict) or "config" not in prov:
        return "no napari-s2s provenance"
    src = str(prov.get("source", ""))
    if not src or not _same_path(src, source):
        return f"made from another source ({src or 'unknown'})"
    genes = [str(g) for g in _plain(prov.get("genes", []))]
    if list(map(str, adata.var_names)) != genes or adata.n_vars == 0 or adata.n_obs == 0:
        return "genes in provenance and data differ"
    asked = str(settings.genes).strip()
    if str(prov.get("genes_requested", "")).strip() != asked:
        return f"other genes asked ({prov.get('genes_requested', 'unknown')!s} != {asked})"
    if not asked.lower().startswith("top:"):
        want = [g.strip() for g in asked.split(",") if g.strip()]
        if genes != want:
            return "other genes"
    elif len(genes) > int(asked[4:]):
        return "other genes"
    have_r = _plain(dict(prov.get("reading", {"counts_from": "auto"})))  # results made before it was recorded
    want_r = reading_record(settings)
    if have_r != want_r:
        diff = sorted(k for k in set(have_r) | set(want_r) if have_r.get(k) != want_r.get(k))
        return (
            "read with other options (" + ", ".join(f"{k} {have_r.get(k)!r} != {want_r.get(k)!r}" for k in diff) + ")"
        )
    have = _plain(dict(prov["config"]))
    want_cfg = _plain(_config_record(settings))
    diff = sorted(k for k in set(have) | set(want_cfg) if k not in RUNTIME_KEYS and have.get(k) != want_cfg.get(k))
    if diff:
        return "other settings (" + ", ".join(f"{k} {have.get(k)!r} != {want_cfg.get(k)!r}" for k in diff[:3]) + ")"
    return None


def reading_record(settings: ImputeSettings) -> dict:
    """How the slide is read (``--pitch-um``, ``--bin-um``, ``--bin-from``), as the provenance records it:
    the options given, so that a result read another way (another bin size) is not taken for this one."""
    rec = {"counts_from": str(settings.counts_from)}
    if settings.pitch_um is not None:
        rec["pitch_um"] = float(settings.pitch_um)
    if settings.bin_um is not None:
        rec["bin_um"] = float(settings.bin_um)
    return rec


def _config_record(settings: ImputeSettings) -> dict:
    """The config as the provenance records it."""
    from .s2s.results import _jsonable

    return _jsonable(settings.config().to_dict())


def _plain(x):
    """numpy scalars and arrays (as AnnData reads them back) -> Python values, for comparison."""
    import numpy as np

    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_plain(v) for v in (x.tolist() if isinstance(x, np.ndarray) else x)]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, bytes):
        return x.decode()
    return x


def _same_path(a: str | Path, b: str | Path) -> bool:
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return str(a) == str(b)
