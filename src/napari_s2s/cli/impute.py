"""``napari-s2s impute PATH --out OUT.h5ad``: train S2S-ST on a slide and write the x2 dense grid.

The job itself is :func:`impute_slide` (reusable, e.g. by a batch command): every check that can fail on
bad input (outputs writable, slide readable, genes known, settings valid, enough spots, H&E present when
asked for) runs before training starts, so that nothing is trained in vain; the outputs (result and,
optionally, the model) are written all-or-nothing at the end.
"""

from __future__ import annotations

import time
from argparse import Namespace
from pathlib import Path
from typing import Callable

from ..core.checks import check_distinct_outputs, check_output_path, write_outputs
from ..core.errors import SlideError
from . import add_slide_argument, commit, load_slide_from_args, say, split_gene_list

#: ``--genes top:N`` / lists above this many genes get a warning stating the cost.
MANY_GENES = 200

#: S2SConfig field -> the option that sets it (config errors are reported with the option's name).
OPTION_OF_FIELD = {
    "budget_s": "--budget",
    "max_steps": "--max-steps",
    "seed": "--seed",
    "threads": "--threads",
    "device": "--device",
    "preset": "--preset",
    "histology": "--histology",
}


def add_parser(sub):
    p = sub.add_parser("impute", help="train S2S-ST on a slide and write the imputed x2 dense grid (.h5ad)")
    add_slide_argument(p)
    p.add_argument("--out", required=True, help="output .h5ad (never the input; its folder must exist)")
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
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--per-gene", action="store_true", help="one model per gene instead of one shared model")
    p.add_argument("--no-natural", action="store_true", help="no natural-image co-learning")
    p.add_argument("--natural-folder", default=None, help="folder of natural images (default: scikit-image's)")
    p.add_argument(
        "--histology",
        choices=("on", "off", "auto"),
        default="off",
        help="H&E guidance: S2S learns what per-spot H&E features do not explain (auto: on when the slide "
        "has an image with >= 4 pixels per spot; default off)",
    )
    p.add_argument(
        "--no-tta",
        action="store_true",
        help="one imputation pass instead of averaging over the lattice's flips (4x faster on hex lattices, "
        "8x on square; -0.008 mean PCC in benchmarks/results/s2s_ablations.md)",
    )
    p.add_argument("--save-model", default=None, help="also save the trained model (.pt; its folder must exist)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


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
            import warnings

            warnings.warn(
                f"--genes {spec}: only {len(genes)} genes are detected in >= 10 % of the spots; imputing those",
                stacklevel=2,
            )
        return genes
    if spec in set(map(str, slide.genes)):
        return [spec]
    genes = split_gene_list(spec)
    if not genes:
        raise SlideError(slide.source, "--genes is empty")
    slide.gene_indices(genes)
    return genes


def impute_config(**options):
    """:class:`~napari_s2s.core.s2s.engine.S2SConfig` from the command's options (``preset=`` and any
    config field); an invalid value is a :class:`SlideError` naming the option (``--budget must be ...``)."""
    from ..core.s2s.engine import S2SConfig

    preset = options.pop("preset", "fast")
    try:
        return S2SConfig.from_preset(preset, **options)
    except (TypeError, ValueError) as exc:
        msg = str(exc)
        for field, option in OPTION_OF_FIELD.items():
            if msg.startswith(field + " "):
                msg = (option + msg[len(field):]).replace(", or None", "").replace(" or None", "")
                break
        raise SlideError(None, f"invalid setting: {msg}") from None


def check_impute_outputs(out, save_model=None, source=None) -> tuple[Path, Path | None]:
    """Before any work: ``--out`` (and ``--save-model``) can be written, differ from each other and from
    the input. See :func:`napari_s2s.core.checks.check_output_path` for the rule."""
    out_p = check_output_path(out, inputs=[source], option="--out")
    model_p = None
    if save_model is not None:
        model_p = check_output_path(save_model, inputs=[source], option="--save-model")
        check_distinct_outputs({"--out": out, "--save-model": save_model})
    return out_p, model_p


def _warn_cost(genes: list[str], slide, spec: str) -> None:
    """Say what many genes cost (imputation time and output size grow with the gene count)."""
    if len(genes) <= MANY_GENES:
        return
    import warnings

    from ..core.data.lattice import dense_positions

    use = slide.usable()
    n_dense = len(dense_positions(slide.array_row[use], slide.array_col[use], slide.kind)[0])
    mb = n_dense * len(genes) * 4 * 2 / 1e6  # X and the s2s_model layer, float32
    warnings.warn(
        f"--genes {spec}: {len(genes)} genes, {len(genes) / 30:.0f}x the default 30: imputation after the "
        f"--budget training grows with the gene count (not part of the budget), and the output holds "
        f"{n_dense} positions x {len(genes)} genes (~{mb:,.0f} MB); a smaller N keeps it short",
        stacklevel=2,
    )


def impute_slide(
    path: str | None,
    out: str,
    *,
    config,
    genes: str = "top:30",
    save_model: str | None = None,
    sample: bool = False,
    pitch_um: float | None = None,
    progress: Callable | None = None,
) -> dict:
    """The ``impute`` job: check everything, train, impute, write the result (and the model).

    Parameters
    ----------
    path
        Slide path (Space Ranger ``outs/`` or ``.h5ad``); ignored with ``sample=True``.
    out
        Output ``.h5ad``; its folder must exist.
    config
        :class:`~napari_s2s.core.s2s.engine.S2SConfig` (see :func:`impute_config`).
    genes
        ``"A,B,..."`` or ``"top:N"``.
    save_model
        Also write the trained model here (``.pt``).
    sample
        Use the built-in synthetic slide.
    pitch_um
        Spot pitch override in micrometres.
    progress
        Called with every :class:`~napari_s2s.core.events.ProgressEvent` of training.

    Returns
    -------
    dict
        ``out``, ``model`` (path or ``None``), ``positions``, ``genes``, ``measured``, ``seconds``, ``steps``.

    Raises
    ------
    SlideError
        Bad input, found before training starts (outputs, slide, genes, settings), or an output that
        could not be written at the end (then nothing is left behind).
    """
    from ..core.s2s.device import resolve_device
    from ..core.s2s.engine import S2SImputer, resolve_histology

    src = None if sample else path
    out_p, model_p = check_impute_outputs(out, save_model, src)
    device = resolve_device(config.device)
    if config.uses_natural and config.natural_folder is not None and not Path(config.natural_folder).is_dir():
        what = "is not a folder" if Path(config.natural_folder).exists() else "no such folder"
        raise SlideError(config.natural_folder, f"--natural-folder: {what}")
    slide = load_slide_from_args(Namespace(path=path, sample=sample, pitch_um=pitch_um))
    n_use = int(slide.usable().sum())
    if n_use < 16:
        raise SlideError(
            slide.source, f"too few spots to train ({n_use} in tissue with at least one count; need 16)"
        )
    gene_list = parse_genes(genes, slide)
    _warn_cost(gene_list, slide, genes)
    resolve_histology(config.histology, slide)  # "--histology on" without an image: bad input, now

    imp = S2SImputer(config)
    t0 = time.perf_counter()
    try:
        for ev in imp.fit_iter(slide, gene_list):
            if progress is not None:
                progress(ev)
        result = imp.impute(slide, gene_list)
    except SlideError as exc:
        if exc.path is None:  # the engine's array-level checks do not know the file: name it
            raise SlideError(slide.source, exc.problem) from None
        raise
    seconds = time.perf_counter() - t0
    adata = result.to_anndata(slide, config, seconds, device=str(device))
    adata.uns["s2s"]["steps"] = int(imp.stats.get("steps", 0))
    adata.uns["s2s"]["histology"] = bool(getattr(imp, "histology_used", False))
    writers = [(out_p, lambda tmp: adata.write_h5ad(tmp))]
    if model_p is not None:
        writers.append((model_p, imp.save))
    write_outputs(writers)
    return {
        "out": out_p,
        "model": model_p,
        "positions": int(adata.n_obs),
        "genes": list(gene_list),
        "measured": int(result.measured.sum()),
        "seconds": float(seconds),
        "steps": int(imp.stats.get("steps", 0)),
    }


def run(args) -> int:
    config = impute_config(
        preset=args.preset,
        budget_s=args.budget,
        max_steps=args.max_steps,
        device=args.device,
        seed=args.seed,
        threads=args.threads,
        per_gene=args.per_gene,
        natural_images=not args.no_natural,
        natural_folder=args.natural_folder,
        histology=args.histology,
        tta=not args.no_tta,
    )
    last = [0.0]

    def progress(ev) -> None:
        if ev.phase != "prepare":
            commit()  # training has started: warnings and progress print as they come from now on
        now = time.perf_counter()
        if not args.quiet and (now - last[0] >= 2.0 or ev.phase in ("prepare", "done", "stopped")):
            eta = "" if ev.eta_s is None else f", ~{ev.eta_s:.0f} s left"
            say(f"napari-s2s: [{ev.phase}] {ev.message} ({ev.elapsed_s:.0f} s{eta})")
            last[0] = now

    done = impute_slide(
        args.path,
        args.out,
        config=config,
        genes=args.genes,
        save_model=args.save_model,
        sample=args.sample,
        pitch_um=args.pitch_um,
        progress=progress,
    )
    commit()
    if not args.quiet:
        say(
            f"napari-s2s: wrote {done['out']} ({done['positions']} dense positions x {len(done['genes'])} genes, "
            f"{done['measured']} measured) in {done['seconds']:.0f} s"
        )
    return 0
