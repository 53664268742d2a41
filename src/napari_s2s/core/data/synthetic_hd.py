"""A generated Visium HD run at real size, written in Space Ranger's real layout (for benchmarks).

No real Visium HD counts of realistic size are available offline; this writes
``<out>/outs/binned_outputs/square_XXXum/`` with ``filtered_feature_bc_matrix.h5`` (10x HDF5 v3
schema, gzip-compressed, genes x bins CSC as Space Ranger writes it),
``spatial/tissue_positions.parquet`` (every bin of the capture area, ``in_tissue`` under the tissue),
``spatial/scalefactors_json.json`` (bin size, microns per pixel, image scale factors) and H&E-like
``tissue_hires_image.png`` / ``tissue_lowres_image.png``. Barcodes are ``s_008um_RRRRR_CCCCC-1``.

Counts: each bin draws a library size (log-normal) from a mixture of a heavy-tailed background
expression profile and a few spatial "domain" programs (smooth fields over the tissue, each raising
a few hundred marker genes), so that about ``density`` of the bins x genes entries are non-zero
(real 8 um Visium HD bins: 0.5-2 %) and marker genes have spatial structure to impute.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

#: Side of a Visium HD capture area in micrometres.
CAPTURE_UM = 6500.0
#: Microns per full-resolution pixel of the generated run (as in the shared real layout).
MICRONS_PER_PIXEL = 0.2738


def write_visium_hd(
    out: str | Path,
    n_bins: int = 500_000,
    bin_um: float = 8.0,
    n_genes: int = 18_000,
    density: float = 0.01,
    seed: int = 0,
    area_um: float = CAPTURE_UM,
    hires_side: int = 6000,
    n_domains: int = 6,
    csv_positions: bool = False,
    compression: int | None = 4,
) -> Path:
    """Write a generated Visium HD run; returns its ``square_XXXum`` bin folder.

    Parameters
    ----------
    out
        Run folder to create (``out/outs/binned_outputs/...``).
    n_bins
        Bins under the tissue (the filtered matrix's columns).
    bin_um
        Bin size in micrometres.
    n_genes
        Genes of the panel (the matrix's features).
    density
        Target fraction of non-zero bins x genes entries.
    area_um
        Side of the square capture area (every bin of it is in the positions table).
    hires_side
        Longer side of the hires image in pixels (the lowres image is a tenth of it).
    csv_positions
        Also write ``spatial/tissue_positions.csv`` (Space Ranger 2.x) so that readers of classic
        Space Ranger folders can open the bin folder too (for before/after benchmarks).
    compression
        gzip level of the HDF5 datasets (``None``: uncompressed).
    """
    import h5py
    import pandas as pd

    rng = np.random.default_rng(seed)
    side = int(np.ceil(area_um / bin_um))
    if n_bins > 0.95 * side * side:
        raise ValueError(f"{n_bins} bins do not fit a {area_um:g} um capture area at {bin_um:g} um")
    tag = f"square_{int(round(bin_um)):03d}um"
    folder = Path(out) / "outs" / "binned_outputs" / tag
    (folder / "spatial").mkdir(parents=True, exist_ok=True)

    # tissue: the n_bins bins of lowest "radius" of a wobbly ellipse
    rr, cc = np.mgrid[0:side, 0:side].astype(np.float32)
    y = (rr - side / 2) / (side / 2)
    x = (cc - side / 2) / (side / 2)
    theta = np.arctan2(y, x)
    wobble = 1 + 0.12 * np.sin(3 * theta + 0.7) + 0.07 * np.sin(5 * theta + 2.1)
    radius = np.sqrt((x / 0.95) ** 2 + (y / 0.8) ** 2) / wobble
    order = np.argsort(radius.ravel(), kind="stable")
    tissue = np.zeros(side * side, bool)
    tissue[order[:n_bins]] = True
    tissue = tissue.reshape(side, side)
    del y, x, theta, wobble, radius, order

    # spatial domains: smooth random fields, softmax -> weights per bin
    fields = _smooth_fields(rng, side, n_domains, scale=max(side / 12, 2))
    w = np.exp(3.0 * fields)
    w /= w.sum(0, keepdims=True)
    t_rows, t_cols = np.nonzero(tissue)
    weights = w[:, t_rows, t_cols].T.astype(np.float64)  # (n_bins, K)
    del w, fields

    # expression: heavy-tailed background, domain programs on marker genes
    base = rng.lognormal(0.0, 2.0, n_genes)
    base /= base.sum()
    programs = []
    for _ in range(n_domains):
        q = base.copy()
        markers = rng.choice(n_genes, 300, replace=False)
        q[markers] *= rng.lognormal(2.5, 0.7, markers.size)
        programs.append(q / q.sum())
    alpha = 0.35  # share of a bin's molecules from its domain programs
    mean_profile = (1 - alpha) * base + alpha * np.mean(programs, axis=0)
    lib_mean = _library_for_density(mean_profile, density * n_genes)
    lib = np.maximum(rng.lognormal(np.log(lib_mean) - 0.125, 0.5, n_bins).round().astype(np.int64), 1)

    counts = _sample_counts(rng, lib, weights, base, programs, alpha)

    # positions of every bin of the capture area: a slightly rotated grid in full-resolution pixels
    ang = np.deg2rad(0.3)
    step = bin_um / MICRONS_PER_PIXEL
    off = 1200.0
    all_r, all_c = np.mgrid[0:side, 0:side]
    all_r, all_c = all_r.ravel(), all_c.ravel()
    px_x = off + step * ((all_c + 0.5) * np.cos(ang) - (all_r + 0.5) * np.sin(ang))
    px_y = off + step * ((all_c + 0.5) * np.sin(ang) + (all_r + 0.5) * np.cos(ang))
    size = int(round(bin_um))
    barcodes = np.array([f"s_{size:03d}um_{r:05d}_{c:05d}-1" for r, c in zip(all_r.tolist(), all_c.tolist())])
    pos = pd.DataFrame(
        {
            "barcode": barcodes,
            "in_tissue": tissue.ravel().astype(np.int32),
            "array_row": all_r.astype(np.int32),
            "array_col": all_c.astype(np.int32),
            "pxl_row_in_fullres": px_y,
            "pxl_col_in_fullres": px_x,
        }
    )
    pos.to_parquet(folder / "spatial" / "tissue_positions.parquet", index=False)
    if csv_positions:
        pos.to_csv(folder / "spatial" / "tissue_positions.csv", index=False)
    tissue_barcodes = barcodes.reshape(side, side)[t_rows, t_cols]

    # images
    full_side = 2 * off + side * step * 1.01
    hires_f = hires_side / full_side
    lowres_f = hires_f / 10
    hires = _he_image(
        tissue,
        w_side=side,
        px_per_bin=step * hires_f,
        off=off * hires_f,
        ang=ang,
        shape=(hires_side, hires_side),
        rng=rng,
    )
    from skimage.io import imsave
    from skimage.transform import resize

    imsave(folder / "spatial" / "tissue_hires_image.png", hires, check_contrast=False)
    low = (resize(hires, (hires_side // 10, hires_side // 10), anti_aliasing=True) * 255).astype(np.uint8)
    imsave(folder / "spatial" / "tissue_lowres_image.png", low, check_contrast=False)
    scalef = {
        "spot_diameter_fullres": step,
        "bin_size_um": float(bin_um),
        "microns_per_pixel": MICRONS_PER_PIXEL,
        "regist_target_img_scalef": hires_f,
        "tissue_lowres_scalef": lowres_f,
        "fiducial_diameter_fullres": 1205.15,
        "tissue_hires_scalef": hires_f,
    }
    (folder / "spatial" / "scalefactors_json.json").write_text(json.dumps(scalef, indent=4))

    # the filtered matrix: genes x bins CSC = our bins x genes CSR
    gene_ids = np.array([f"ENSSYN{i:011d}" for i in range(n_genes)])
    names = np.array([f"Gene{i:05d}" for i in range(n_genes)])
    kw = {} if compression is None else {"compression": "gzip", "compression_opts": compression}
    with h5py.File(folder / "filtered_feature_bc_matrix.h5", "w") as f:
        f.attrs["library_ids"] = np.array([b"synthetic_visium_hd"])
        f.attrs["filetype"] = "matrix"
        g = f.create_group("matrix")
        g.create_dataset("barcodes", data=tissue_barcodes.astype("S"), **kw)
        g.create_dataset("data", data=counts.data.astype(np.int32), chunks=True, **kw)
        g.create_dataset("indices", data=counts.indices.astype(np.int64), chunks=True, **kw)
        g.create_dataset("indptr", data=counts.indptr.astype(np.int64), **kw)
        g.create_dataset("shape", data=np.array([n_genes, counts.shape[0]], np.int32))
        fe = g.create_group("features")
        fe.create_dataset("id", data=gene_ids.astype("S"), **kw)
        fe.create_dataset("name", data=names.astype("S"), **kw)
        fe.create_dataset("feature_type", data=np.array([b"Gene Expression"] * n_genes), **kw)
        fe.create_dataset("genome", data=np.array([b"synthetic"] * n_genes), **kw)
        fe.create_dataset("_all_tag_keys", data=np.array([b"genome"]))
    return folder


def _smooth_fields(rng, side: int, k: int, scale: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter, zoom

    small = max(int(side / scale * 4), 8)
    out = np.empty((k, side, side), np.float32)
    for i in range(k):
        f = gaussian_filter(rng.normal(size=(small, small)), 2.0)
        f = zoom(f, side / small, order=1)[:side, :side]
        out[i] = (f - f.mean()) / (f.std() + 1e-9)
    return out


def _library_for_density(profile: np.ndarray, target_genes: float) -> float:
    """Mean library size at which a bin holds ``target_genes`` distinct genes on average."""
    lo, hi = 1.0, 1e6
    for _ in range(60):
        mid = np.sqrt(lo * hi)
        if np.sum(1 - np.exp(-mid * profile)) < target_genes:
            lo = mid
        else:
            hi = mid
    return float(np.sqrt(lo * hi))


def _sample_counts(rng, lib, weights, base, programs, alpha, chunk: int = 20_000) -> sp.csr_matrix:
    n_bins, k = weights.shape
    g = base.size
    cum = [np.cumsum(base)] + [np.cumsum(q) for q in programs]
    blocks = []
    for a in range(0, n_bins, chunk):
        b = min(a + chunk, n_bins)
        t = lib[a:b]
        n_dom = rng.binomial(t, alpha)
        pv = weights[a:b] / weights[a:b].sum(1, keepdims=True)
        pv[:, :-1] *= 1 - 1e-9  # numpy checks sum(pvals[:-1]) <= 1 in floating point
        per_dom = rng.multinomial(n_dom, pv)  # (bins, K)
        sources = [t - n_dom] + [per_dom[:, i] for i in range(k)]
        keys = []
        for src, c in zip(sources, cum):
            total = int(src.sum())
            if total == 0:
                continue
            gene = np.minimum(np.searchsorted(c, rng.random(total) * c[-1]), g - 1)
            keys.append(np.repeat(np.arange(b - a, dtype=np.int64), src) * g + gene)
        key = np.concatenate(keys)
        u, n = np.unique(key, return_counts=True)
        blocks.append(sp.csr_matrix((n.astype(np.float32), (u // g, u % g)), shape=(b - a, g)))
    return sp.vstack(blocks, format="csr")


def _he_image(tissue, w_side, px_per_bin, off, ang, shape, rng) -> np.ndarray:
    """An H&E-like RGB image: white glass, pink tissue with purple speckles, under the bins' affine."""
    from scipy.ndimage import map_coordinates

    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # image pixel -> bin (row, col): inverse of the rotated grid
    dx, dy = xx - off, yy - off
    col = (dx * np.cos(ang) + dy * np.sin(ang)) / px_per_bin - 0.5
    row = (-dx * np.sin(ang) + dy * np.cos(ang)) / px_per_bin - 0.5
    inside = map_coordinates(tissue.astype(np.float32), [row, col], order=1, mode="constant", cval=0.0)
    del dx, dy, col, row, yy, xx
    speck = rng.random((h, w), dtype=np.float32)
    img = np.empty((h, w, 3), np.uint8)
    t = inside[..., None]
    pink = np.array([232, 170, 200], np.float32)
    purple = np.array([120, 60, 150], np.float32)
    glass = np.array([245, 245, 245], np.float32)
    nuclei = (speck > 0.93)[..., None]
    tissue_rgb = np.where(nuclei, purple, pink)
    img[:] = np.clip(t * tissue_rgb + (1 - t) * glass, 0, 255).astype(np.uint8)
    return img
