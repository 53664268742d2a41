"""``napari-s2s impute PATH --out OUT.h5ad``: train S2S-ST on a slide and write the x2 dense grid.

A thin command over the job :func:`napari_s2s.core.jobs.run_impute_job` (the one ``batch`` runs too):
every check that can fail on bad input runs before training starts, and the outputs (result and,
optionally, the model) are written all-or-nothing at the end. Here: the options, and progress on stderr
(held back until training starts, so that bad input prints its error line alone).
"""

from __future__ import annotations

import argparse
import time

from ..core.jobs import ImputeSettings, parse_genes, run_impute_job  # noqa: F401  (parse_genes: re-exported)
from ..core.s2s.genes import AUX_GENES
from . import add_slide_argument, commit, say


def add_parser(sub):
    p = sub.add_parser("impute", help="train S2S-ST on a slide and write the imputed x2 dense grid (.h5ad or .zarr)")
    add_slide_argument(p)
    p.add_argument(
        "-o",
        "--out",
        required=True,
        help="output .h5ad (AnnData, the default format), or .zarr (SpatialData, with the measured values and the "
        "image: needs napari-s2s[spatialdata]); never the input; its folder must exist",
    )
    add_training_options(p)
    p.add_argument("--save-model", default=None, help="also save the trained model (.pt; its folder must exist)")
    p.add_argument(
        "--force", action="store_true", help="replace --out (and --save-model) when they exist (default: refuse)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def add_training_options(
    p, threads: int | None = None, threads_help: str = "torch CPU threads (default: torch's choice)"
) -> None:
    """The options that say what to impute and how (shared by ``impute`` and ``batch``)."""
    p.add_argument(
        "--genes",
        default="top:30",
        help="comma-separated gene names (repeats are dropped), or top:N (default top:30)",
    )
    p.add_argument("--budget", type=float, default=120.0, help="training time budget in seconds (default 120)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many training steps")
    p.add_argument("--preset", choices=("fast", "paper"), default="fast", help="model size (default fast)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto", help="compute device")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--threads", type=int, default=threads, help=threads_help)
    p.add_argument("--no-natural", action="store_true", help="no natural-image co-learning")
    p.add_argument("--natural-folder", default=None, help="folder of natural images (default: scikit-image's)")
    p.add_argument(
        "--histology",
        choices=("on", "off", "auto"),
        default="auto",
        help="H&E term of the base predictor: auto (default) tries it when the slide has an image with >= 4 "
        "pixels per spot and keeps it where cross-validation on the measured spots says it helps; on always; off never",
    )
    p.add_argument(
        "--tta",
        action="store_true",
        help="average each network over every flip/rotation of the lattice (4x slower on hex lattices, 8x on "
        "square; the networks of the ensemble already use different ones)",
    )
    p.add_argument(
        "--aux-genes",
        type=int,
        default=None,
        metavar="N",
        help="genes of the slide with the strongest spatial signal that the networks also train on, besides "
        f"the genes imputed (default {AUX_GENES}; 0: none); they are never imputed",
    )
    p.add_argument("--no-tta", action="store_true", help=argparse.SUPPRESS)  # the old default; kept for scripts


def settings_from_args(args) -> ImputeSettings:
    """The :class:`ImputeSettings` of parsed ``impute``/``batch`` options."""
    from . import reading_options

    reading = reading_options(args, getattr(args, "path", None))
    return ImputeSettings(
        genes=args.genes,
        budget=args.budget,
        max_steps=args.max_steps,
        preset=args.preset,
        device=args.device,
        seed=args.seed,
        threads=args.threads,
        natural=not args.no_natural,
        natural_folder=args.natural_folder,
        histology=args.histology,
        tta=bool(args.tta) and not args.no_tta,
        aux_genes=args.aux_genes,
        pitch_um=getattr(args, "pitch_um", None),
        bin_um=reading["bin_um"],
        counts_from=reading["counts_from"],
    )


def run(args) -> int:
    last = [0.0]

    def progress(ev) -> None:
        if ev.phase != "prepare":
            commit()  # training has started: warnings and progress print as they come from now on
        now = time.perf_counter()
        if not args.quiet and (now - last[0] >= 2.0 or ev.phase in ("prepare", "done", "stopped")):
            eta = "" if ev.eta_s is None else f", ~{ev.eta_s:.0f} s left"
            say(f"napari-s2s: [{ev.phase}] {ev.message} ({ev.elapsed_s:.0f} s{eta})")
            last[0] = now

    done = run_impute_job(
        args.path,
        args.out,
        settings_from_args(args),
        sample=args.sample,
        save_model=args.save_model,
        on_event=progress,
        replace=args.force,
    )
    commit()
    if not args.quiet:
        say(
            f"napari-s2s: wrote {done.out} ({done.n_obs} dense positions x {len(done.genes)} genes, "
            f"{done.n_measured} measured) in {done.seconds:.0f} s"
        )
    return 0
