"""A batch: every slide imputed once into ``DIR/<slide name>_s2s.h5ad``, with a manifest row each.

1. :func:`plan_batch` (no cluster needed): a slide whose result exists and matches the settings
   (:func:`~napari_s2s.core.jobs.result_matches`) is ``skipped``; two slides that would write the same
   file: the second is ``failed``; the rest is to do.
2. :func:`run_batch`: one Dask task per slide to do (:func:`impute_task`, the same job as
   ``napari-s2s impute``), rows recorded in the manifest as tasks finish, a task whose worker died
   submitted again (``retries``).

Results are written atomically by the job (a temporary file, then a rename), so an interrupted batch
never leaves a half-written result under its final name; re-running the same command resumes it.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SlideError
from ..jobs import ImputeSettings, result_matches, run_impute_job
from .inputs import output_path
from .manifest import Manifest


@dataclass
class BatchPlan:
    """What a batch has to do: ``todo`` = ``[(slide, output)]``; ``rows`` already decided (skipped, failed);
    ``redo`` = ``{slide: why its existing output is not kept}``."""

    todo: list[tuple[Path, Path]] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    redo: dict[Path, str] = field(default_factory=dict)


def plan_batch(slides: list[Path], out_dir: str | Path, settings: ImputeSettings) -> BatchPlan:
    """Split ``slides`` into skipped (an up-to-date result exists), failed (an output name is taken) and to do."""
    plan = BatchPlan()
    taken: dict[Path, Path] = {}
    for slide in slides:
        out = output_path(out_dir, slide)
        if out in taken:
            plan.rows.append(
                _row(
                    slide,
                    "failed",
                    error=f"its output {out.name} is also the output of "
                    f"{taken[out]}; give slides distinct names or separate runs",
                )
            )
            continue
        taken[out] = slide
        why = result_matches(out, slide, settings)
        if why is None:
            plan.rows.append(_skipped_row(slide, out))
        else:
            if out.exists():
                plan.redo[slide] = why
            plan.todo.append((slide, out))
    return plan


def run_batch(
    client,
    plan: BatchPlan,
    settings: ImputeSettings,
    manifest: Manifest,
    retries: int = 1,
    on_row: Callable[[dict], None] | None = None,
    on_retry: Callable[[Path, int, str], None] | None = None,
) -> Manifest:
    """Run the slides of ``plan.todo`` as Dask tasks; record every row in ``manifest`` as it finishes.

    Parameters
    ----------
    client
        A Dask client (:func:`~napari_s2s.core.batch.cluster.open_client`).
    plan
        From :func:`plan_batch`; its decided rows are recorded first.
    settings
        What to impute and how.
    manifest
        Where rows go (rewritten after each).
    retries
        Times a slide whose worker died is submitted again.
    on_row
        Called with each row (a dict of :data:`~napari_s2s.core.batch.manifest.COLUMNS`, plus
        ``warnings``) once it is in the manifest.
    on_retry
        Called with ``(slide, attempt, reason)`` when a slide is submitted again.
    """
    from .cluster import run_tasks

    for row in plan.rows:
        manifest.add(row)
        if on_row is not None:
            on_row(row)
    if not plan.todo:
        return manifest
    calls = {slide: (f"impute-{out.stem}", impute_task, (str(slide), str(out), settings)) for slide, out in plan.todo}
    outs = dict(plan.todo)
    for slide, ok, value in run_tasks(client, calls, retries=retries, on_retry=on_retry):
        row = value if ok else _row(slide, "failed", error=value)
        manifest.add(row)
        remove_temporaries(outs[slide])
        if on_row is not None:
            on_row(row)
    return manifest


def impute_task(path: str, out: str, settings: ImputeSettings) -> dict:
    """One slide, on a worker: the impute job (:func:`~napari_s2s.core.jobs.run_impute_job`, the same
    checks, file and provenance as ``napari-s2s impute``), its failure turned into a ``failed`` row (never raised).

    Returns the manifest row, plus ``warnings``: the one-line warnings the job gave.
    """
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            done = run_impute_job(path, out, settings)
            row = _row(path, "done", output=str(done.out), genes=done.genes, device=done.device)
        except SlideError as exc:
            row = _row(path, "failed", error=str(exc))
        except Exception as exc:  # the batch goes on: the row says what went wrong
            msg = " ".join(str(exc).split())
            row = _row(path, "failed", error=f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__)
    row["seconds"] = time.perf_counter() - t0
    row["warnings"] = list(dict.fromkeys(" ".join(str(w.message).split()) for w in caught))
    return row


def remove_temporaries(out: Path) -> None:
    """Remove temporary files of ``out`` left by writers that died (a killed worker cannot clean up).

    Called once the slide's task has finished, when no writer of ``out`` is left in this batch (one
    batch per output folder at a time).
    """
    for tmp in Path(out).parent.glob(f".{Path(out).name}.*.tmp"):
        tmp.unlink(missing_ok=True)


def _row(path, status: str, output: str = "", genes=(), device: str = "", error: str = "") -> dict:
    return {
        "path": str(path),
        "status": status,
        "output": output,
        "seconds": None,
        "genes": list(genes),
        "device": device,
        "error": error,
        "warnings": [],
    }


def _skipped_row(slide: Path, out: Path) -> dict:
    """The row of a slide whose result is already there (genes and device from its provenance)."""
    import h5py

    genes, device = [], ""
    try:
        with h5py.File(out, "r") as f:
            prov = f["uns/s2s"]
            genes = [g.decode() if isinstance(g, bytes) else str(g) for g in prov["genes"][()]]
            dev = prov["device"][()]
            device = dev.decode() if isinstance(dev, bytes) else str(dev)
    except (OSError, KeyError):
        pass
    return _row(slide, "skipped", output=str(out), genes=genes, device=device)
