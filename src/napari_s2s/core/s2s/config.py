"""The engine's settings: :class:`S2SConfig` (a validated dataclass), its presets and losses.

Everything a run can set lives here, checked when the object is made, so that a bad value is one
clear ``ValueError`` before any training starts; :meth:`S2SConfig.to_dict` and
:meth:`S2SConfig.from_dict` round-trip it through the saved provenance (``uns['s2s']['config']``).
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass

import numpy as np

from .device import DEVICE_NAMES
from .genes import AUX_GENES

#: Training losses: on the standardised values, or deviances of the counts (:func:`attach_counts`).
LOSSES = ("mse", "l1", "poisson", "nb")
COUNT_LOSSES = ("poisson", "nb")

#: Architecture and optimiser settings of the presets (anything else comes from the field defaults).
PRESETS: dict[str, dict] = {
    # the paper's CDCIN: 3 cascades of RDN(G0=32, D=8, C=4, G=32) with HAB window 8; Adam lr 1e-4,
    # betas (0.5, 0.999), batch 16 + 16 natural-image crops, 32x32 windows of the measured lattice
    "paper": dict(
        cascades=3,
        features=32,
        blocks=8,
        layers=4,
        growth=32,
        window=8,
        attention=True,
        heads=4,
        mlp_ratio=4.0,
        patch=32,
        batch_size=32,
        natural_share=0.5,
        lr=1e-4,
        beta1=0.5,
    ),
    # small enough to train usefully on 2 CPU cores in about two minutes: no attention blocks (they
    # were ~2/3 of the compute; without them ~3.5x more steps per second at the same held-out error)
    "fast": dict(
        cascades=2,
        features=16,
        blocks=2,
        layers=3,
        growth=16,
        window=8,
        attention=False,
        heads=2,
        mlp_ratio=2.0,
        patch=16,
        batch_size=16,
        natural_share=0.25,
        lr=3e-4,
        beta1=0.9,
    ),
}

_ARCH_KEYS = tuple(PRESETS["fast"].keys())


@dataclass
class S2SConfig:
    """Settings of S2S-ST training and imputation (typed, validated; ``to_dict``/``from_dict``).

    Architecture fields left ``None`` take the preset's value. How a result is made (see
    :class:`S2SImputer`): the base predictor (``base_model``: ``"cv"`` the best of kriging with or
    without PCA denoising and H&E term by K-fold cross-validation over the measured spots,
    ``"kriging"`` plain kriging), ``folds`` cross-fitted networks (an ensemble), and their blend with
    the base (``blend``: ``"cv"`` the weight chosen on out-of-fold predictions, ``"network"`` the
    networks alone, ``"base"`` the base alone). ``histology``: the H&E term may enter the base
    (``"auto"``: when the slide has a usable image, ``"on"``: required, ``"off"``: never).

    Network levers beyond the paper (see ``benchmarks/results/previous_engine/s2s_README.md``): ``loss`` ("mse",
    "l1", or the deviance of the counts with the library size as offset, "poisson" or "nb" (negative
    binomial), measured in ``benchmarks/results/network_levers.md``), ``dc`` (data consistency inside the cascade: "soft", "hard", "none"), ``base`` (the
    cascade starts from a smoother of the kept samples, "smooth", from the cross-gene smoother,
    "pca", from the base predictor's prediction given as an extra input channel, "prior" (worse
    blends than "smooth": ``benchmarks/results/s2s_paired.md``), or from the kept values, "zero"), ``adaptive`` (smoother bandwidths are ``sigmas`` times
    the leave-one-out bandwidth of the kept samples at each level, one for all the user's genes;
    ``bandwidth_genes`` > 0: of that many genes of the slide with the strongest spatial signal
    instead, the same whatever genes the user picked; measured, not better), ``cross_gene`` (PCA-denoised
    smoother channels), ``augment`` (lattice-keeping flips/rotations), ``ema`` (moving average of
    the weights; 0 turns it off), ``natural_share`` (fraction of each batch that is natural-image
    crops), ``natural_sizes`` (the natural images' longest side in pixels, downscaled to it; several:
    every image at each size, i.e. the same structures at several scales per lattice pitch; measured,
    not better), ``tta`` (each network averaged over every lattice-keeping flip/rotation; without it
    network ``k`` uses the ``k``-th one, so the ensemble still averages over several),
    ``blend_margin`` (the blend weight is the least-squares weight on the out-of-fold predictions
    minus this many of its standard errors, clustered by spot; 0: the least-squares weight itself;
    ``benchmarks/results/blend_margin.md``), ``checkpoints`` (each network keeps the weights, among
    those scored at every ``1 / checkpoints`` of the budget and at the end, with the lowest error on
    its own fold's spots, which it never trained on; 0: the last weights; trained longer, the networks
    fit the slide's measured spots ever more closely and predict held-out spots worse:
    ``benchmarks/results/network_levers.md``), ``checkpoint_scope`` ("member": each network its own
    best checkpoint; "shared": one scoring for the whole ensemble, the members' mean error; measured,
    not better), ``gene_mix`` (share of training samples that are a convex mixture of two genes at the
    same place, whose channels stay consistent as they are linear in the values; measured, not
    better), ``fold_layout`` (which measured spots each network holds out: "random" spots, or
    "blocks", whole regions of the slide (:func:`~.train.assign_folds`), so that a network is not
    scored on spots surrounded by its own training targets; measured, not better overall:
    ``benchmarks/results/network_levers.md``), ``weight_decay`` (decoupled weight decay, AdamW; 0: Adam;
    measured, no effect),
    ``kept_dropout`` (half of the slide's training windows have this share of their kept spots dropped
    from the inputs, their smoothers rebuilt at the phase's bandwidths, the dropped spots becoming
    targets: the networks never see the same few input images again and again; measured, not
    better), ``network_target`` (when the base has an H&E term: "residual", the networks learn what the
    term leaves and the term is added to their predictions; "values", they learn the values themselves;
    measured, better on HER2ST with 8 genes and worse with 30), ``term_sources`` (with residual
    networks, where the H&E term at a measured spot takes its smoothed features from: "all", every
    other measured spot (its leave-one-out term), in the inputs, the targets and the out-of-fold
    predictions; "kept", in each phase the targets and the out-of-fold predictions take the term
    conditioned on that phase's kept spots, as the base's own out-of-fold prediction does and as the
    dense level conditions it on the measured spots; the inputs keep the leave-one-out term; measured,
    no effect),
    ``coarse_share`` (share of the slide's training windows drawn one level sparser: each coset of
    the measured lattice's sub-lattice as a slide of its own, so that the networks learn the sparser
    -> sparse mapping at two pitches instead of one; :func:`~.train.coarse_problems`),
    ``hole_share`` (share of the slide's training windows drawn at the measured pitch itself: every
    measured spot kept as input but a random ``hole_rate`` of them, which become the targets, so that
    the networks also see inputs as dense as those they impute from; :func:`~.train.hole_problems`;
    measured at 0.25, within noise: ``benchmarks/results/hole_share.md``),
    ``tissue_share`` (share of the natural-image crops taken from the slide's own H&E laid out on the
    dense grid, at its pitch and half of it, when the slide has a usable image:
    :func:`~.natural.tissue_images`; measured at 0.5 over three seeds, within noise:
    ``benchmarks/results/network_levers.md``),
    ``checkpoint_split`` (with ``checkpoints``: each fold's spots are split in two seeded halves, one
    scores the checkpoints, the other weighs the networks against the base, so that the weight is not
    fitted on the spots that picked the weights it judges),
    ``lr_decay`` (learning rate over the budget: "none",
    "linear" or "cosine" down to 0; measured, not better), ``precision`` (inference arithmetic: ``"auto"``
    bfloat16 on CPUs that run it natively), ``threads`` (torch CPU threads, set inside the training
    call, i.e. the worker thread).

    Training genes (:mod:`.genes`): ``aux_genes`` genes of the slide with the strongest spatial
    signal outside the user's are trained on too (never imputed), the user's genes keeping half of
    the draws; ``None``: :data:`~.genes.AUX_GENES` (none; always 0 with ``base="prior"``, whose
    prior covers the user's genes only). With 30 user genes, 30 auxiliary genes added 0.006 median
    PCC over 36 paired tasks of the shared slides; with 8 they lowered it (they raise the networks'
    out-of-fold gain, hence their weight, more than what the networks add at the dense level:
    ``benchmarks/results/aux_genes.md``). ``gene_sampling="signal"`` draws genes in proportion to
    their signal instead.
    """

    preset: str = "fast"
    cascades: int | None = None
    features: int | None = None
    blocks: int | None = None
    layers: int | None = None
    growth: int | None = None
    window: int | None = None
    attention: bool | None = None
    heads: int | None = None
    mlp_ratio: float | None = None
    patch: int | None = None
    batch_size: int | None = None
    natural_share: float | None = None
    lr: float | None = None
    beta1: float | None = None
    budget_s: float | None = 120.0
    max_steps: int | None = None
    device: str = "auto"
    seed: int = 0
    natural_images: bool = True
    natural_folder: str | None = None
    natural_sizes: tuple = (160,)
    loss: str = "mse"
    dc: str = "soft"
    base: str = "smooth"
    cross_gene: bool = True
    augment: bool = True
    ema: float = 0.99
    folds: int = 4
    blend: str = "cv"
    base_model: str = "cv"
    precision: str = "auto"
    sigmas: tuple | None = None
    adaptive: bool = True
    min_window_frac: float = 0.5
    pca_components: int = 30
    max_pca_genes: int = 2000
    threads: int | None = None
    tile: int = 512
    tta: bool = False
    histology: str = "auto"
    aux_genes: int | None = None
    gene_sampling: str = "uniform"
    blend_margin: float = 2.0
    lr_decay: str = "none"
    checkpoints: int = 8
    checkpoint_scope: str = "member"
    gene_mix: float = 0.0
    bandwidth_genes: int = 0
    fold_layout: str = "random"
    weight_decay: float = 0.0
    kept_dropout: float = 0.0
    network_target: str = "residual"
    term_sources: str = "all"
    coarse_share: float = 0.0
    hole_share: float = 0.0
    hole_rate: float = 0.25
    tissue_share: float = 0.0
    checkpoint_split: bool = False

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, not {self.preset!r}")
        for k, v in PRESETS[self.preset].items():
            if getattr(self, k) is None:
                setattr(self, k, v)
        self.natural_sizes = tuple(self.natural_sizes) if isinstance(self.natural_sizes, (list, tuple)) else ()
        if not self.natural_sizes or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and 32 <= v <= 4096 for v in self.natural_sizes
        ):
            raise ValueError("natural_sizes must be one or more whole numbers of pixels from 32 to 4096")
        self.natural_sizes = tuple(int(v) for v in self.natural_sizes)
        if self.sigmas is None:
            self.sigmas = (0.5, 1.0, 2.0) if self.adaptive else (1.0, 2.0, 4.0)
        self.sigmas = tuple(float(s) for s in self.sigmas)
        ints = ("cascades", "features", "blocks", "layers", "growth", "window", "heads", "patch", "batch_size")
        for k in ints:
            v = getattr(self, k)
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ValueError(f"{k} must be a positive integer, not {v!r}")
            setattr(self, k, int(v))
        if self.window < 2 and self.attention:
            raise ValueError("window must be >= 2 when attention is on")
        if self.budget_s is not None and not (_is_real(self.budget_s) and 0 < self.budget_s < float("inf")):
            raise ValueError(f"budget_s must be a finite number of seconds > 0, or None, not {self.budget_s!r}")
        if self.max_steps is not None and not (_is_int(self.max_steps) and self.max_steps >= 0):
            raise ValueError(f"max_steps must be a non-negative integer or None, not {self.max_steps!r}")
        if not (_is_int(self.seed) and 0 <= self.seed < 2**32):
            raise ValueError(f"seed must be an integer in [0, 2**32), not {self.seed!r}")
        for k in ("lr", "mlp_ratio", "tile", "pca_components", "max_pca_genes"):
            v = getattr(self, k)
            if not (_is_real(v) and 0 < v < float("inf")):
                raise ValueError(f"{k} must be a finite number > 0, not {v!r}")
        for k in ("beta1", "min_window_frac"):
            v = getattr(self, k)
            if not (_is_real(v) and 0 <= v < 1 if k == "beta1" else _is_real(v) and 0 < v <= 1):
                raise ValueError(f"{k} must be in {'[0, 1)' if k == 'beta1' else '(0, 1]'}, not {v!r}")
        if self.budget_s is None and self.max_steps is None:
            raise ValueError("give a time budget (budget_s) and/or a step limit (max_steps)")
        if self.device not in DEVICE_NAMES:
            raise ValueError(f"device must be one of {', '.join(DEVICE_NAMES)}, not {self.device!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {self.loss!r}")
        if self.loss in COUNT_LOSSES and self.gene_mix:
            raise ValueError(f"loss {self.loss!r} needs gene_mix 0 (a mixture of two genes has no counts)")
        if self.dc not in ("soft", "hard", "none"):
            raise ValueError(f"dc must be 'soft', 'hard' or 'none', not {self.dc!r}")
        if self.base not in ("prior", "smooth", "pca", "zero"):
            raise ValueError(f"base must be 'prior', 'smooth', 'pca' or 'zero', not {self.base!r}")
        if not 0.0 <= float(self.natural_share) < 1.0:
            raise ValueError(f"natural_share must be in [0, 1), not {self.natural_share!r}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), not {self.ema!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, not {self.lr!r}")
        if self.threads is not None and not (_is_int(self.threads) and 1 <= self.threads <= 4096):
            raise ValueError(f"threads must be an integer from 1 to 4096, or None, not {self.threads!r}")
        if len(self.sigmas) < 1 or not all(0 < s < float("inf") for s in self.sigmas):
            raise ValueError("sigmas must be positive finite bandwidths")
        if isinstance(self.folds, bool) or int(self.folds) != self.folds or not 2 <= self.folds <= 16:
            raise ValueError(f"folds must be an integer from 2 to 16, not {self.folds!r}")
        self.folds = int(self.folds)
        if self.blend not in ("cv", "network", "base"):
            raise ValueError(f"blend must be 'cv', 'network' or 'base', not {self.blend!r}")
        if self.base_model not in ("cv", "kriging"):
            raise ValueError(f"base_model must be 'cv' or 'kriging', not {self.base_model!r}")
        if self.precision not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"precision must be 'auto', 'float32' or 'bfloat16', not {self.precision!r}")
        if self.histology not in ("off", "on", "auto"):
            raise ValueError(f"histology must be 'off', 'on' or 'auto', not {self.histology!r}")
        if self.aux_genes is None:
            self.aux_genes = 0 if self.base == "prior" else AUX_GENES
        if isinstance(self.aux_genes, bool) or not _is_int(self.aux_genes) or not 0 <= self.aux_genes <= 4096:
            raise ValueError(f"aux_genes must be an integer from 0 to 4096, not {self.aux_genes!r}")
        self.aux_genes = int(self.aux_genes)
        if not (_is_real(self.blend_margin) and 0 <= self.blend_margin < float("inf")):
            raise ValueError(f"blend_margin must be a finite number >= 0, not {self.blend_margin!r}")
        self.blend_margin = float(self.blend_margin)
        if self.aux_genes and self.base == "prior":
            raise ValueError("aux_genes needs base 'smooth', 'pca' or 'zero' (the prior covers the user's genes only)")
        if isinstance(self.checkpoints, bool) or not _is_int(self.checkpoints) or not 0 <= self.checkpoints <= 64:
            raise ValueError(f"checkpoints must be an integer from 0 to 64, not {self.checkpoints!r}")
        self.checkpoints = int(self.checkpoints)
        if not (_is_real(self.gene_mix) and 0 <= self.gene_mix <= 1):
            raise ValueError(f"gene_mix must be a number from 0 to 1, not {self.gene_mix!r}")
        self.gene_mix = float(self.gene_mix)
        if (
            isinstance(self.bandwidth_genes, bool)
            or not _is_int(self.bandwidth_genes)
            or not 0 <= self.bandwidth_genes <= 4096
        ):
            raise ValueError(f"bandwidth_genes must be an integer from 0 to 4096, not {self.bandwidth_genes!r}")
        self.bandwidth_genes = int(self.bandwidth_genes)
        if not isinstance(self.checkpoint_split, bool):
            raise ValueError(f"checkpoint_split must be true or false, not {self.checkpoint_split!r}")
        if self.checkpoint_scope not in ("member", "shared"):
            raise ValueError(f"checkpoint_scope must be 'member' or 'shared', not {self.checkpoint_scope!r}")
        if not (_is_real(self.weight_decay) and 0 <= self.weight_decay <= 10):
            raise ValueError(f"weight_decay must be a number from 0 to 10, not {self.weight_decay!r}")
        self.weight_decay = float(self.weight_decay)
        if not (_is_real(self.kept_dropout) and 0 <= self.kept_dropout <= 0.9):
            raise ValueError(f"kept_dropout must be a number from 0 to 0.9, not {self.kept_dropout!r}")
        self.kept_dropout = float(self.kept_dropout)
        if self.kept_dropout and self.base == "prior":
            raise ValueError(
                "kept_dropout needs base 'smooth', 'pca' or 'zero' (the prior is made from all kept spots)"
            )
        if self.network_target not in ("residual", "values"):
            raise ValueError(f"network_target must be 'residual' or 'values', not {self.network_target!r}")
        if self.term_sources not in ("all", "kept"):
            raise ValueError(f"term_sources must be 'all' or 'kept', not {self.term_sources!r}")
        if self.term_sources == "kept" and self.kept_dropout:
            raise ValueError("term_sources 'kept' and kept_dropout cannot be combined (a dropped spot's target)")
        if not (_is_real(self.tissue_share) and 0 <= self.tissue_share <= 1):
            raise ValueError(f"tissue_share must be a number in [0, 1], not {self.tissue_share!r}")
        self.tissue_share = float(self.tissue_share)
        # extra training problems (one level sparser, or at the measured pitch): one kind at a time
        for name in ("coarse_share", "hole_share"):
            share = getattr(self, name)
            if not (_is_real(share) and 0 <= share < 1):
                raise ValueError(f"{name} must be a number in [0, 1), not {share!r}")
            setattr(self, name, float(share))
            if share and (self.base == "prior" or self.loss in COUNT_LOSSES or self.term_sources == "kept"):
                raise ValueError(
                    f"{name} needs base 'smooth', 'pca' or 'zero', loss 'mse' or 'l1' and term_sources 'all'"
                )
        if self.hole_share and self.coarse_share:
            raise ValueError("hole_share and coarse_share cannot be combined")
        if not (_is_real(self.hole_rate) and 0.05 <= self.hole_rate <= 0.5):
            raise ValueError(f"hole_rate must be a number from 0.05 to 0.5, not {self.hole_rate!r}")
        self.hole_rate = float(self.hole_rate)
        if self.fold_layout not in ("random", "blocks"):
            raise ValueError(f"fold_layout must be 'random' or 'blocks', not {self.fold_layout!r}")
        if self.lr_decay not in ("none", "linear", "cosine"):
            raise ValueError(f"lr_decay must be 'none', 'linear' or 'cosine', not {self.lr_decay!r}")
        if self.gene_sampling not in ("uniform", "signal"):
            raise ValueError(f"gene_sampling must be 'uniform' or 'signal', not {self.gene_sampling!r}")

    @classmethod
    def from_preset(cls, name: str = "fast", **overrides) -> S2SConfig:
        """Config of preset ``name`` with any field overridden."""
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, not {name!r}")
        return cls(preset=name, **overrides)

    def to_dict(self) -> dict:
        """Plain dict (JSON- and checkpoint-safe)."""
        d = dataclasses.asdict(self)
        d["sigmas"] = list(self.sigmas)
        d["natural_sizes"] = list(self.natural_sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> S2SConfig:
        """Inverse of :meth:`to_dict` (unknown keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in dict(d).items() if k in names}
        if "sigmas" in kw:
            kw["sigmas"] = tuple(kw["sigmas"])
        if "natural_sizes" in kw:
            kw["natural_sizes"] = tuple(kw["natural_sizes"])
        return cls(**kw)

    @property
    def uses_natural(self) -> bool:
        return bool(self.natural_images and self.natural_share > 0)


def _is_real(v) -> bool:
    """A real number (not a bool, not a string)."""
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def _is_int(v) -> bool:
    """An integer value (``3`` or ``3.0``; not a bool, NaN, infinity or string)."""
    return _is_real(v) and bool(np.isfinite(float(v))) and float(v) == int(v)
