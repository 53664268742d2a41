"""A small synthetic Visium-like slide generated in code (the offline sample data).

Hex lattice (Visium geometry: 100 um pitch, ``row + col`` even), an elliptical piece of tissue, an
H&E-like image whose nuclear (haematoxylin) density follows a "tumour" region, and a handful of genes
with spatial structure (a region marker that follows the stain pattern, a gradient, a layered
pattern, blobs) plus noise genes, sampled as Poisson counts. Small enough to train on in seconds.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .lattice import SQRT3_2
from .slide import Slide

#: Full-resolution pixels per micrometre of the synthetic slide (so the pitch is 40 px).
_PX_PER_UM = 0.4


def make_synthetic_slide(
    n_rows: int = 30, n_cols: int = 60, n_noise_genes: int = 20, seed: int = 0, image: bool = True
) -> Slide:
    """Build the synthetic slide.

    Parameters
    ----------
    n_rows, n_cols
        Array extent (hex: ``n_rows * n_cols / 2`` spots).
    n_noise_genes
        Genes with no spatial structure added to the structured ones.
    seed
        Random seed (the slide is fully determined by its arguments).
    image
        Include the H&E-like ``hires`` image.
    """
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[0:n_rows, 0:n_cols]
    keep = (rr + cc) % 2 == 0
    rows, cols = rr[keep], cc[keep]
    # physical position in um (Visium: 100 um pitch, rows sqrt(3)/2 pitch apart)
    y_um = rows * SQRT3_2 * 100.0 + 300.0
    x_um = cols * 50.0 + 300.0
    h_um = (n_rows - 1) * SQRT3_2 * 100.0 + 600.0
    w_um = (n_cols - 1) * 50.0 + 600.0
    cy, cx = h_um / 2, w_um / 2
    ell = ((y_um - cy) / (0.46 * h_um)) ** 2 + ((x_um - cx) / (0.47 * w_um)) ** 2
    in_tissue = ell <= 1.0

    # spatial fields in [0, 1], functions of physical position (um)
    def tumour(y, x):
        d = ((y - 0.4 * h_um) / (0.22 * h_um)) ** 2 + ((x - 0.35 * w_um) / (0.18 * w_um)) ** 2
        return 1.0 / (1.0 + np.exp(6.0 * (np.sqrt(d) - 1.0)))

    def gradient(y, x):
        return np.clip((x - 300.0) / (w_um - 600.0), 0, 1)

    def layers(y, x):
        return 0.5 + 0.5 * np.sin(2 * np.pi * y / 900.0)

    def blobs(y, x):
        out = np.zeros_like(y, dtype=float)
        for by, bx in ((0.7, 0.7), (0.3, 0.75), (0.75, 0.3)):
            out += np.exp(-(((y - by * h_um) ** 2 + (x - bx * w_um) ** 2) / (2 * 220.0**2)))
        return np.clip(out, 0, 1)

    fields = {
        "TumorMarker": tumour,
        "Gradient1": gradient,
        "Layered1": layers,
        "Blobs1": blobs,
        "TumorLow": lambda y, x: 1.0 - tumour(y, x),
        "Mixed1": lambda y, x: 0.5 * layers(y, x) + 0.5 * gradient(y, x),
    }
    n = rows.size
    lib = rng.lognormal(mean=np.log(2000.0), sigma=0.3, size=n)
    genes, cols_out = [], []
    for name, f in fields.items():
        rate = 0.002 + 0.02 * f(y_um, x_um)
        genes.append(name)
        cols_out.append(rng.poisson(rate * lib))
    for k in range(n_noise_genes):
        genes.append(f"Noise{k + 1}")
        cols_out.append(rng.poisson(rng.uniform(0.001, 0.01) * lib))
    counts = np.stack(cols_out, axis=1).astype(np.float32)
    counts[~in_tissue] = rng.poisson(0.2, size=(int((~in_tissue).sum()), len(genes)))

    x_px = x_um * _PX_PER_UM
    y_px = y_um * _PX_PER_UM
    images, factors = {}, {}
    if image:
        scalef = 0.5
        img = _he_image(
            h_um,
            w_um,
            scalef,
            tumour,
            lambda y, x: (((y - cy) / (0.46 * h_um)) ** 2 + ((x - cx) / (0.47 * w_um)) ** 2) <= 1.0,
            rng,
        )
        images["hires"] = img
        factors["hires"] = scalef
    return Slide(
        counts=sp.csr_matrix(counts),
        genes=np.array(genes),
        barcodes=np.array([f"SPOT-{r}-{c}" for r, c in zip(rows, cols)]),
        array_row=rows,
        array_col=cols,
        in_tissue=in_tissue,
        pixel_xy=np.stack([x_px, y_px], axis=1),
        images=images,
        scalefactors=factors,
        spot_diameter_px=65.0 * _PX_PER_UM,
        library_id="synthetic",
        source=None,
        metadata={"synthetic": True, "seed": seed},
    )


def _he_image(h_um, w_um, scalef, tumour, tissue, rng) -> np.ndarray:
    """An H&E-like RGB image: pink stroma, purple nuclei whose density follows ``tumour``."""
    from scipy.ndimage import gaussian_filter

    h = int(round(h_um * _PX_PER_UM * scalef))
    w = int(round(w_um * _PX_PER_UM * scalef))
    yy, xx = np.mgrid[0:h, 0:w]
    y_um = yy / (_PX_PER_UM * scalef)
    x_um = xx / (_PX_PER_UM * scalef)
    t = tissue(y_um, x_um).astype(float)
    t = gaussian_filter(t, 1.5)
    dens = 0.03 + 0.25 * tumour(y_um, x_um)
    nuclei = (rng.random((h, w)) < dens * t).astype(float)
    nuclei = np.clip(gaussian_filter(nuclei, 0.8) * 3.0, 0, 1)
    texture = gaussian_filter(rng.normal(size=(h, w)), 2.0) * 0.15
    white = np.array([242.0, 240.0, 245.0])
    eosin = np.array([236.0, 160.0, 195.0])
    haem = np.array([95.0, 60.0, 150.0])
    base = white[None, None] * (1 - t[..., None]) + eosin[None, None] * t[..., None]
    base = base * (1 + texture[..., None] * t[..., None])
    img = base * (1 - nuclei[..., None]) + haem[None, None] * nuclei[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)
