"""Co-learning images: the slide's own H&E on the dense grid (``natural.tissue_images``) and how the
natural-image sampler draws them (``S2SConfig.tissue_share``)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_s2s.core.data.histology_features import feature_function, feature_names, histology_view
from napari_s2s.core.s2s import engine as E
from napari_s2s.core.s2s.natural import load_natural_images, tissue_images
from napari_s2s.core.s2s.train import NaturalSampler


def _cfg(**kw) -> E.S2SConfig:
    return E.S2SConfig.from_preset("fast", max_steps=2, budget_s=None, threads=1, device="cpu", tta=False, **kw)


def test_tissue_images_follow_the_features_on_the_dense_grid():
    """Features that change along rows only give images that change along rows only, one per grid
    step, spanning the measured spots' bounding box at that step; a feature without variation adds
    no image."""
    rows, cols = np.array([3, 3, 7, 9]), np.array([2, 8, 4, 6])

    def feats(r, c):
        r = np.asarray(r, float)
        return np.stack([r, 2 * r + 1, np.ones_like(r)], axis=1)

    ims = tissue_images(feats, rows, cols, steps=(1.0, 0.5))
    assert len(ims) == 2  # one component (the features are of rank 1), at each step
    assert ims[0].shape == (2 * (9 - 3) + 1, 2 * (8 - 2) + 1)
    assert ims[1].shape == (4 * (9 - 3) + 1, 4 * (8 - 2) + 1)
    for im in ims:
        assert im.dtype == np.float32 and im.min() == 0.0 and im.max() == 1.0
        assert np.ptp(im, axis=1).max() < 1e-6  # constant along each row
        d = np.diff(im[:, 0])
        assert (d >= 0).all() or (d <= 0).all()  # monotonic across rows
    assert tissue_images(lambda r, c: np.ones((len(r), 2)), rows, cols) == []


def test_tissue_images_of_a_real_slide_show_its_he(read_shared):
    """HER2ST C2: the first image at the measured spots follows the H&E (grey level), inside [0, 1]."""
    slide = read_shared("her2st_C2")
    feats = feature_function(histology_view(slide), slide.kind, scale=2.0)
    rows, cols, *_ = E.slide_training_arrays(slide, slide.top_variable_genes(2), 100, names=True)
    ims = tissue_images(feats, rows, cols)
    assert len(ims) == 6
    first = ims[0]
    assert first.shape == (2 * np.ptp(rows) + 1, 2 * np.ptp(cols) + 1)
    at_spots = first[2 * (rows - rows.min()), 2 * (cols - cols.min())]
    grey = feats(2 * rows, 2 * cols)[:, feature_names().index("mean_grey")]
    assert abs(np.corrcoef(at_spots, grey)[0, 1]) > 0.5
    assert all(0 <= im.min() and im.max() <= 1 and im.std() > 0.05 for im in ims)


def test_the_sampler_draws_tissue_images_by_their_share():
    """With share 1 every crop is a tissue crop; with share 0 (or none given) the sampler draws the
    same random numbers as without them, so the default's stream is unchanged."""
    cfg = _cfg()
    flat = [np.zeros((200, 200), np.float32)]
    ramp = np.tile(np.linspace(0, 1, 40, dtype=np.float32)[:, None], (1, 40))
    only = NaturalSampler(flat, "square", 8, cfg, tissue=[ramp], tissue_share=1.0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        _, tg, lm = only.sample(rng)
        assert np.ptp(tg[lm]) > 0.5  # a ramp, not the flat photograph
    plain = NaturalSampler(load_natural_images(limit=2), "hex", 8, cfg)
    zero = NaturalSampler(load_natural_images(limit=2), "hex", 8, cfg, tissue=[ramp], tissue_share=0.0)
    a, b = np.random.default_rng(4), np.random.default_rng(4)
    for _ in range(5):
        for x, y in zip(plain.sample(a), zero.sample(b)):
            np.testing.assert_array_equal(x, y)
    assert a.random() == b.random()
    half = NaturalSampler(flat, "square", 8, cfg, tissue=[ramp], tissue_share=0.5)
    rng = np.random.default_rng(1)
    share = np.mean([np.ptp(half.sample(rng)[1]) > 0 for _ in range(400)])
    assert 0.42 < share < 0.58


def test_the_engine_hands_the_slides_he_to_the_sampler(read_shared, monkeypatch):
    """``tissue_share`` on a slide with an image: the sampler gets its tissue images and the share;
    on a slide without one, or at 0, it gets none; out-of-range shares are refused."""
    seen = []

    class Recording(NaturalSampler):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            seen.append((len(self.tissue), self.tissue_share))

    monkeypatch.setattr(E, "NaturalSampler", Recording)
    genes = ["ERBB2", "GNAS", "KRT19"]
    E.S2SImputer(_cfg(tissue_share=0.4)).fit(read_shared("her2st_C2"), genes)
    E.S2SImputer(_cfg()).fit(read_shared("her2st_C2"), genes)
    grid_only = read_shared("st_breast_cancer_layer2")
    E.S2SImputer(_cfg(tissue_share=0.4)).fit(grid_only, grid_only.top_variable_genes(3))
    assert seen == [(6, 0.4), (0, 0.0), (0, 0.0)]
    for bad in (-0.1, 1.5, "half", True):
        with pytest.raises(ValueError, match="tissue_share"):
            E.S2SConfig(tissue_share=bad)
    assert E.S2SConfig.from_dict(E.S2SConfig(tissue_share=0.25).to_dict()).tissue_share == 0.25
