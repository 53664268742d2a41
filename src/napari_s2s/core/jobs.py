"""The impute job: one slide in, one imputed ``.h5ad`` out.

:func:`run_impute_job` is the single code path behind ``napari-s2s impute`` (one slide, in the
foreground) and ``napari-s2s batch`` (one task per slide on a Dask cluster), so both write the same
file with the same provenance. :class:`ImputeSettings` holds what the user asked for (genes, budget,
preset, ...); it is a small picklable value that travels to cluster workers, and it says whether an
existing result was made with the same settings (:func:`result_matches`), which is how a re-run batch
knows what to skip.

torch is imported only when a job runs, not when this module is imported.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import SlideError

#: Config keys that say how a job ran, not what it computes: a result made with other values of these
#: is still the result asked for.
RUNTIME_KEYS = ("device", "threads")


@dataclass(frozen=True)
class ImputeSettings:
    """What to impute and how (the options of ``napari-s2s impute`` / ``batch``).

    Attributes
    ----------
    genes
        ``"A,B,..."`` or ``"top:N"`` (the N most variable genes of each slide).
    budget
        Training time budget in seconds (``None``: no time limit, then ``max_steps`` is needed).
    max_steps
        Step limit (``None``: the budget alone); with a step limit training is deterministic for a seed.
    preset, device, seed, threads, per_gene, natural, natural_folder, histology, tta
        As the :class:`~napari_s2s.core.s2s.engine.S2SConfig` fields of (nearly) the same names.
    pitch_um
        Spot pitch override handed to the reader.
    """

    genes: str = "top:30"
    budget: float | None = 120.0
    max_steps: int | None = None
    preset: str = "fast"
    device: str = "auto"
    seed: int = 0
    threads: int | None = None
    per_gene: bool = False
    natural: bool = True
    natural_folder: str | None = None
    histology: str = "off"
    tta: bool = True
    pitch_um: float | None = None

    def config(self):
        """The :class:`~napari_s2s.core.s2s.engine.S2SConfig` of these settings (imports torch)."""
        from .s2s.engine import S2SConfig

        return S2SConfig.from_preset(
            self.preset,
            budget_s=self.budget,
            max_steps=self.max_steps,
            device=self.device,
            seed=self.seed,
            threads=self.threads,
            per_gene=self.per_gene,
            natural_images=self.natural,
            natural_folder=self.natural_folder,
            histology=self.histology,
            tta=self.tta,
        )

    def replace(self, **changes) -> "ImputeSettings":
        return dataclasses.replace(self, **changes)


@dataclass
class ImputeOutcome:
    """What a finished job wrote: the file, its shape, genes, device and wall-clock seconds."""

    out: Path
    genes: list[str]
    n_obs: int
    n_measured: int
    device: str
    seconds: float
    steps: int


def parse_genes(spec: str, slide) -> list[str]:
    """Genes from ``A,B,...`` or ``top:N`` (the N most variable genes of the slide)."""
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
        return genes
    genes = [g.strip() for g in spec.split(",") if g.strip()]
    if not genes:
        raise SlideError(slide.source, "--genes is empty")
    slide.gene_indices(genes)
    return genes


def run_impute_job(
    slide,
    out: str | Path,
    settings: ImputeSettings,
    source: str | Path | None = None,
    on_event: Callable | None = None,
    save_model: str | Path | None = None,
) -> ImputeOutcome:
    """Train S2S-ST on ``slide`` and write the x2 dense grid to ``out`` (atomically).

    Parameters
    ----------
    slide
        The slide (read already: callers check their output path first).
    out
        Destination ``.h5ad``.
    settings
        What to impute and how.
    source
        The input's path (``None`` for the built-in sample); the write refuses to replace it.
    on_event
        Called with every training :class:`~napari_s2s.core.events.ProgressEvent`.
    save_model
        Also save the trained model here (``.pt``).

    Raises
    ------
    SlideError
        Bad genes, a slide too small to train on, an output that cannot be written.
    """
    from .s2s.device import resolve_device
    from .s2s.engine import S2SImputer
    from .s2s.results import write_imputed

    device = resolve_device(settings.device)
    genes = parse_genes(settings.genes, slide)
    cfg = settings.config()
    imp = S2SImputer(cfg)
    t0 = time.perf_counter()
    for ev in imp.fit_iter(slide, genes):
        if on_event is not None:
            on_event(ev)
    result = imp.impute(slide, genes)
    seconds = time.perf_counter() - t0
    adata = result.to_anndata(slide, cfg, seconds, device=str(device))
    adata.uns["s2s"]["steps"] = int(imp.stats.get("steps", 0))
    adata.uns["s2s"]["histology"] = bool(getattr(imp, "histology_used", False))
    adata.uns["s2s"]["genes_requested"] = str(settings.genes)
    written = write_imputed(adata, out, source=source)
    if save_model:
        imp.save(save_model)
    return ImputeOutcome(
        out=written,
        genes=list(genes),
        n_obs=int(adata.n_obs),
        n_measured=int(result.measured.sum()),
        device=str(device),
        seconds=seconds,
        steps=int(imp.stats.get("steps", 0)),
    )


def impute_file(path: str | Path, out: str | Path, settings: ImputeSettings) -> ImputeOutcome:
    """Read the slide at ``path`` and run :func:`run_impute_job` on it (a batch task's body)."""
    from .data.io import read_slide
    from .s2s.results import check_output_path

    check_output_path(out, path)
    slide = read_slide(path, pitch_um=settings.pitch_um)
    return run_impute_job(slide, out, settings, source=path)


# ---------------------------------------------------------------------- is a result the one asked for?
def result_matches(out: str | Path, source: str | Path, settings: ImputeSettings) -> str | None:
    """Why the result at ``out`` is *not* what ``settings`` would make from ``source``; ``None`` when it is.

    A result matches when the whole file reads back as AnnData, its provenance (``uns['s2s']``) names
    the same source, the same gene request (and, for a gene list, those genes; for ``top:N``, N
    genes), and the same training config apart from :data:`RUNTIME_KEYS`, and ``X`` has one column
    per gene.
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
    have = _plain(dict(prov["config"]))
    want_cfg = _plain(_config_record(settings))
    diff = sorted(k for k in set(have) | set(want_cfg) if k not in RUNTIME_KEYS and have.get(k) != want_cfg.get(k))
    if diff:
        return "other settings (" + ", ".join(f"{k} {have.get(k)!r} != {want_cfg.get(k)!r}" for k in diff[:3]) + ")"
    return None


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
