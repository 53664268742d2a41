"""``napari-s2s batch PATH... --out-dir DIR``: impute a cohort, one Dask task per slide.

Each slide gets exactly what ``napari-s2s impute`` writes (the same job, :mod:`napari_s2s.core.jobs`), as
``DIR/<slide name>_s2s.h5ad``, and a row in ``DIR/manifest.csv`` as soon as it finishes. Slides whose
result is already there and matches the options are skipped, so re-running an interrupted batch resumes it.
Runs on a local cluster (one worker process per core) or on a running scheduler (``--scheduler``).

Exit code: 0 when every slide is done or skipped, 1 when some failed (see the manifest), 2 on bad input or
when no slide could be imputed, 130 when interrupted (the manifest keeps what finished). Bad input found
before the tasks start (options, paths, ``--out-dir``, a scheduler that does not answer) is one stderr line:
the notes said before that are held back (:func:`napari_s2s.cli.say`) until the cluster answers.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from ..core.errors import SlideError
from . import add_reading_options, commit, say
from .impute import add_training_options, settings_from_args


def add_cluster_options(p, local_default: str) -> None:
    """``--workers N | --scheduler ADDRESS``, ``--retries``, ``--connect-timeout`` (shared with ``benchmark``)."""
    from ..core.batch.cluster import CONNECT_TIMEOUT

    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help=f"local Dask cluster of N worker processes, one thread each ({local_default})",
    )
    g.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="a running Dask scheduler, e.g. tcp://host:8786 (its workers must see the same paths)",
    )
    p.add_argument(
        "--retries", type=int, default=1, metavar="N", help="times a task is run again when its worker dies (default 1)"
    )
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=CONNECT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up on a scheduler that does not answer within this time (default {CONNECT_TIMEOUT:g})",
    )


def check_cluster_options(args) -> None:
    if args.workers is not None and args.workers < 1:
        raise SlideError(None, f"--workers must be >= 1, not {args.workers}")
    if args.retries < 0:
        raise SlideError(None, f"--retries must be >= 0, not {args.retries}")
    if not args.connect_timeout > 0:
        raise SlideError(None, f"--connect-timeout must be > 0 seconds, not {args.connect_timeout}")


def add_parser(sub):
    p = sub.add_parser(
        "batch",
        help="impute many slides on a Dask cluster: DIR/<slide>_s2s.h5ad each and DIR/manifest.csv",
        description="Impute every slide named by the PATHs (files, Space Ranger outs/ folders, or folders of "
        "slides) with the same options as `impute`, one Dask task per slide, on a local cluster or a running "
        "scheduler. Writes DIR/<slide name>_s2s.h5ad and DIR/manifest.csv (path, status, output, seconds, "
        "genes, device, error) as slides finish; slides whose result is already there with the same options "
        "are skipped, so re-running resumes an interrupted batch.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="slides (.h5ad, Space Ranger outs/) or folders of slides")
    p.add_argument(
        "-o",
        "--out-dir",
        required=True,
        metavar="DIR",
        help="folder for the results and manifest.csv (created when missing)",
    )
    add_reading_options(p)
    add_training_options(p, threads=1, threads_help="torch CPU threads per task (default 1)")
    add_cluster_options(p, local_default="default: one per core")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p


def run(args) -> int:
    from ..core.batch.cluster import default_workers, open_client
    from ..core.batch.inputs import find_slides
    from ..core.batch.manifest import Manifest
    from ..core.batch.runner import plan_batch, run_batch
    from ..core.jobs import check_settings

    settings = settings_from_args(args)
    # the impute job's own checks of the settings (each task checks them again, with the slide, before training);
    # the device only for a local cluster, whose workers have this machine's devices
    check_settings(settings, device=args.scheduler is None)
    check_cluster_options(args)
    out_dir = Path(os.path.abspath(Path(args.out_dir).expanduser()))  # workers may run in another folder
    if out_dir.exists() and not out_dir.is_dir():
        raise SlideError(out_dir, "--out-dir is a file, not a folder")
    slides, problems = find_slides(args.paths, exclude=out_dir)
    if not slides:
        why = "; ".join(f"{p}: {r}" for p, r in problems)
        raise SlideError(None, f"no slide among the paths ({why})")
    prepare_out_dir(out_dir)

    lines = _Say(args.quiet)
    plan = plan_batch(slides, out_dir, settings)
    manifest = Manifest(out_dir / "manifest.csv", order=[str(s) for s in slides])
    n = len(slides) + len(problems)
    n_skip = sum(r["status"] == "skipped" for r in plan.rows)
    for path, reason in problems:  # a path given that names no slide: a failed row (a typo must not pass as done)
        manifest.add({"path": path, "status": "failed", "error": f"{path}: {reason}"})
    notes = [f"error: {path}: {reason}; a failed row in the manifest" for path, reason in problems]
    notes += [f"{slide.name}: existing result not kept ({why}); imputing again" for slide, why in plan.redo.items()]
    notes.append(f"{n} slide(s): {len(plan.todo)} to impute, {n_skip} up to date (skipped) -> {out_dir}")
    progress = _Progress(n, len(plan.todo), lines, args.quiet)
    t0 = time.perf_counter()
    try:
        if plan.todo:
            # no more local workers than slides to impute
            workers = None if args.scheduler else min(args.workers or default_workers(), len(plan.todo))
            with open_client(workers, args.scheduler, args.connect_timeout, say=notes.append) as client:
                for note in notes:  # said once the cluster answers: a bad --scheduler stays a one-line error
                    lines.line(note)
                commit()
                progress.open()
                run_batch(
                    client,
                    plan,
                    settings,
                    manifest,
                    retries=args.retries,
                    on_row=progress.row,
                    on_retry=lambda s, k, why: lines.line(
                        f"{Path(s).name}: {why}; running it again (retry {k} of {args.retries})"
                    ),
                )
        else:
            for note in notes:
                lines.line(note)
            commit()
            progress.open()
            run_batch(None, plan, settings, manifest, on_row=progress.row)
    except KeyboardInterrupt:
        progress.close()
        c = manifest.counts()
        if not manifest.rows:
            manifest.write()
        commit()
        say(
            f"napari-s2s: interrupted: {sum(c.values())} of {n} slide(s) finished; manifest {manifest.path}; "
            "run the same command again to resume"
        )
        return 130
    finally:
        progress.close()
    c = manifest.counts()
    summary = f"{c['done']} done, {c['skipped']} skipped, {c['failed']} failed in {time.perf_counter() - t0:.0f} s"
    if c["failed"] and not (c["done"] or c["skipped"]):
        raise SlideError(None, f"no slide could be imputed ({summary}; see {manifest.path})")
    lines.line(f"{summary}; manifest {manifest.path}")
    return 1 if c["failed"] else 0


def prepare_out_dir(out_dir: Path) -> None:
    """Create ``out_dir`` if needed and check that files can be written there (one-line error otherwise)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SlideError(out_dir, f"cannot create --out-dir: {(exc.strerror or str(exc)).lower()}") from None
    try:
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".napari-s2s-write-test-"):
            pass
    except OSError as exc:
        raise SlideError(out_dir, f"--out-dir is not writable: {(exc.strerror or str(exc)).lower()}") from None


class _Say:
    """One-line messages on stderr: through the progress bar when there is one, else :func:`say`
    (held back until the batch commits to its work)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = None

    def line(self, msg: str) -> None:
        if self.quiet:
            return
        text = f"napari-s2s: {msg}"
        if self.bar is not None:
            self.bar.write(" ".join(text.split()), file=sys.stderr)
        else:
            say(text)


class _Progress:
    """One line per finished slide, and a progress bar with ETA on a terminal (tqdm)."""

    def __init__(self, total: int, todo: int, lines: _Say, quiet: bool):
        self.total, self.todo, self.say, self.quiet = total, todo, lines, quiet
        self.finished = 0
        self.ran = 0
        self.t0 = None
        self._stop = None

    def open(self) -> None:
        self.t0 = time.perf_counter()
        if self.quiet:
            return
        from tqdm import tqdm

        # disable=None: a bar only on a terminal; logs get the per-slide lines (with an ETA) alone
        self.say.bar = tqdm(
            total=self.total,
            unit="slide",
            file=sys.stderr,
            disable=None,
            dynamic_ncols=True,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]",
        )
        if self.say.bar.disable:
            self.say.bar = None
            return
        self._stop = threading.Event()  # keep the elapsed time and ETA moving between finished slides
        threading.Thread(target=self._tick, args=(self.say.bar, self._stop), daemon=True).start()

    @staticmethod
    def _tick(bar, stop) -> None:
        while not stop.wait(1.0):
            bar.refresh()

    def row(self, row: dict) -> None:
        self.finished += 1
        if row["status"] != "skipped":
            self.ran += 1
        name = Path(row["path"]).name
        where = f"[{self.finished}/{self.total}]"
        if row["status"] == "done":
            secs = row.get("seconds")
            secs = f"{secs:.0f} s, " if isinstance(secs, (int, float)) else ""
            msg = f"{where} done {name} ({secs}{len(row['genes'])} genes, {row['device']}) -> {row['output']}"
        elif row["status"] == "skipped":
            msg = f"{where} skipped {name} (up to date: {row['output']})"
        else:
            msg = f"{where} failed {name}: {row['error']}"
        left = self.todo - self.ran
        if row["status"] != "skipped" and self.ran and left > 0:
            eta = (time.perf_counter() - self.t0) / self.ran * left
            msg += f"; ~{_duration(eta)} left"
        for w in row.get("warnings", ()):
            self.say.line(f"warning: {name}: {w}")
        self.say.line(msg)
        if self.say.bar is not None:
            self.say.bar.update(1)

    def close(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self.say.bar is not None:
            self.say.bar.close()
            self.say.bar = None


def _duration(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.0f} min" if s < 5400 else f"{s / 3600:.1f} h"
