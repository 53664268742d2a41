"""``napari-s2s impute PATH --out OUT.h5ad``: train S2S-ST on a slide and write the x2 dense grid."""

from __future__ import annotations

import sys
import time

from ..core.errors import SlideError
from . import add_slide_argument, load_slide_from_args


def add_parser(sub):
    p = sub.add_parser("impute", help="train S2S-ST on a slide and write the imputed x2 dense grid (.h5ad or .zarr)")
    add_slide_argument(p)
    p.add_argument(
        "--out",
        required=True,
        help="output .h5ad (AnnData, the default format), or .zarr (SpatialData: needs napari-s2s[spatialdata]); "
        "never the input",
    )
    p.add_argument("--genes", default="top:30", help="comma-separated gene names, or top:N (default top:30)")
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
    p.add_argument("--save-model", default=None, help="also save the trained model (.pt)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


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


def run(args) -> int:
    from ..core.s2s.device import resolve_device
    from ..core.s2s.engine import S2SConfig, S2SImputer
    from ..core.s2s.results import check_output_path, write_imputed

    if args.budget is not None and args.budget <= 0:
        raise SlideError(None, f"--budget must be > 0 seconds, not {args.budget}")
    device = resolve_device(args.device)
    src = None if args.sample else args.path
    as_zarr = str(args.out).rstrip("/\\").lower().endswith(".zarr")
    if as_zarr:
        from ..core.data.spatialdata_zarr import import_spatialdata

        import_spatialdata(args.out)  # before any work: without the extra, say how to install it
    check_output_path(args.out, src, allow_store=as_zarr)
    slide = load_slide_from_args(args)
    genes = parse_genes(args.genes, slide)
    cfg = S2SConfig.from_preset(
        args.preset,
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
    imp = S2SImputer(cfg)
    t0 = time.perf_counter()
    last = 0.0
    for ev in imp.fit_iter(slide, genes):
        now = time.perf_counter()
        if not args.quiet and (now - last >= 2.0 or ev.phase in ("prepare", "done", "stopped")):
            eta = "" if ev.eta_s is None else f", ~{ev.eta_s:.0f} s left"
            print(f"napari-s2s: [{ev.phase}] {ev.message} ({ev.elapsed_s:.0f} s{eta})", file=sys.stderr)
            last = now
    result = imp.impute(slide, genes)
    seconds = time.perf_counter() - t0
    adata = result.to_anndata(slide, cfg, seconds, device=str(device))
    adata.uns["s2s"]["steps"] = int(imp.stats.get("steps", 0))
    adata.uns["s2s"]["histology"] = bool(getattr(imp, "histology_used", False))
    if as_zarr:
        from ..core.data.spatialdata_zarr import write_spatialdata

        out = write_spatialdata(adata, slide, args.out, source=src)
    else:
        out = write_imputed(adata, args.out, source=src)
    if args.save_model:
        imp.save(args.save_model)
    if not args.quiet:
        print(
            f"napari-s2s: wrote {out} ({adata.n_obs} dense positions x {adata.n_vars} genes, "
            f"{int(result.measured.sum())} measured) in {seconds:.0f} s",
            file=sys.stderr,
        )
    return 0
