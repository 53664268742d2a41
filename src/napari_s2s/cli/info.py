"""``napari-s2s info PATH [--json]``: what a slide holds."""

from __future__ import annotations

import json

from . import add_slide_argument, load_slide_from_args


def add_parser(sub):
    p = sub.add_parser("info", help="describe a slide (spots, genes, lattice, images, scale)")
    add_slide_argument(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    return p


def slide_info(slide) -> dict:
    """The ``info`` record of the CLI contract (extra keys are allowed)."""
    g = slide.geometry
    return {
        "path": slide.source,
        "library_id": slide.library_id,
        "spots_total": int(slide.n_spots_total),
        "spots_in_tissue": int(slide.in_tissue.sum()),
        "genes": int(slide.n_genes),
        "lattice": slide.kind,
        "grid_shape": list(slide.grid_extent()),
        "images": {k: list(v.shape[:2]) for k, v in slide.images.items()},
        "um_per_px": None if g.um_per_px is None else round(float(g.um_per_px), 6),
        "pitch_um": g.pitch_um,
        "technology": g.technology,
        "pitch_px": None if g.pitch_px is None else round(float(g.pitch_px), 3),
        "spots_usable": int(slide.usable().sum()),
        "lattice_residual_pitch": round(float(g.residual_pitch), 3),
        "bin_um": slide.metadata.get("bin_um"),
        "counts_from": slide.metadata.get("counts_from"),
    }


def run(args) -> int:
    slide = load_slide_from_args(args)
    info = slide_info(slide)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    width = max(len(k) for k in info)
    for k, v in info.items():
        print(f"{k:<{width}}  {v}")
    return 0
