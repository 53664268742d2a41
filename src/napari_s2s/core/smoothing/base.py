"""The best non-learned predictor of a slide, chosen by K-fold cross-validation over its measured spots.

S2S starts from this predictor and falls back to it (:mod:`napari_s2s.core.s2s.engine`). The
candidates share one smoother, kriging (:mod:`.kriging`), and differ in what it smooths:

* the measured values themselves, or their projection on the top ``k`` principal components over
  every gene detected on the slide (centred or standardised PCA; :mod:`.pca`): cross-gene
  denoising, which helps where many genes share the same spatial patterns;
* with or without the H&E term (:class:`.ridge.FeatureTerm`, a ridge model of the smoother's
  residual on per-position image features) when the slide has a usable image.

Each candidate is scored by repeated K-fold cross-validation over the measured spots: the PCA
basis, the kriging weights and the H&E term are all refitted without the fold, the fold is
predicted from the other spots, and the error (squared, each gene divided by its variance so
that every gene weighs the same) is averaged.

The predictor is then a *stack* of the candidates (``selection="stack"``, the default; a "super
learner"): convex weights, the ones whose weighted sum of the candidates' cross-validated
predictions has the lowest error (:func:`stack_weights`), applied to the candidates refitted on
every measured spot. A stack is never worse in cross-validation than its best member and averages
away part of the choice's noise where several candidates are about as good: on the shared slides
its hidden-spot PCC was higher than the single choice's on 17 of 24 tasks (6 slides x 4 measured
cosets, ``benchmarks/base_choice.py``). As every candidate smooths with the same kriging weights
and the H&E term is linear in its coefficients, the stack is itself one predictor of the same form
(weighted denoised values, weighted H&E coefficients): it costs one candidate's time to apply.
The older rules remain for comparison: ``"one-se"`` (among the candidates within one standard
error of the lowest error, paired spot by spot, the simplest: fewest additions to plain kriging)
and ``"lowest"``. Nothing but the measured spots is ever looked at, so 46 measured spots are
enough to decide, and a slide with fewer spots than :data:`MIN_CV_SPOTS` keeps plain kriging.

The kriging hyper-parameters (length, signal-to-noise) are chosen once, by leave-one-out over all
measured spots, and kept in every fold.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import nnls

from .gaussian import gene_weights
from .kriging import Kriging
from .pca import as_matrix, pca_basis, reconstruct
from .ridge import FeatureTerm

#: Candidate numbers of principal components (capped by the spots and genes available).
COMPONENTS: tuple[int, ...] = (2, 4, 8, 15, 30)

#: Fewest measured spots for which candidates are cross-validated (fewer: plain kriging).
MIN_CV_SPOTS = 20

#: Largest slide cross-validated in full; larger ones are cross-validated on a square crop.
MAX_CV_SPOTS = 3000

#: From this many measured spots, one K-fold partition (no repeats).
MANY_SPOTS = 1000

#: Stack weights below this are dropped (and the others rescaled to sum to one).
MIN_STACK_WEIGHT = 0.02

#: Selection rules of :class:`BasePredictor`.
SELECTIONS = ("stack", "one-se", "lowest")


@dataclass(frozen=True)
class BaseChoice:
    """One candidate: PCA components (``None``: no denoising), standardised PCA, H&E term."""

    components: int | None = None
    standardised: bool = False
    histology: bool = False

    @property
    def label(self) -> str:
        parts = ["kriging"]
        if self.components:
            parts.append(f"PCA {self.components}{' standardised' if self.standardised else ''}")
        if self.histology:
            parts.append("H&E")
        return " + ".join(parts)


def candidates(n_spots: int, n_genes_all: int, histology: bool, components=COMPONENTS) -> list[BaseChoice]:
    """The candidates a slide allows (components below the fold's spot count and the gene count)."""
    cap = min(n_genes_all - 1, int(n_spots * 0.8) - 2)
    ks = [k for k in components if k <= cap]
    dens = [(None, False)] + [(k, st) for st in (False, True) for k in ks]
    hes = (False, True) if histology else (False,)
    return [BaseChoice(k, st, he) for he in hes for k, st in dens]


def complexity(choice: BaseChoice) -> int:
    """How many additions to plain kriging a candidate makes (PCA denoising, H&E term)."""
    return int(bool(choice.components)) + int(choice.histology)


def one_se_choice(cands: list[BaseChoice], errs: np.ndarray, per_spot: np.ndarray) -> int:
    """Index of the chosen candidate by the one-standard-error rule (see the module notes).

    ``errs`` (c,): mean cross-validated errors; ``per_spot`` (c, m): the same per spot. A candidate
    is eligible when its mean error exceeds the lowest by at most one standard error of the paired
    per-spot differences; the least complex eligible candidate wins, then the lowest error.
    """
    best = int(np.argmin(errs))
    m = per_spot.shape[1]
    diff = per_spot - per_spot[best]
    se = diff.std(axis=1, ddof=1) / np.sqrt(m) if m > 1 else np.zeros(len(cands))
    eligible = [i for i in range(len(cands)) if errs[i] <= errs[best] + se[i]]
    return min(eligible, key=lambda i: (complexity(cands[i]), errs[i], i))


def stack_weights(gram: np.ndarray, cross: np.ndarray, min_weight: float = MIN_STACK_WEIGHT) -> np.ndarray:
    """Convex weights ``w`` (``w >= 0``, ``sum(w) = 1``) minimising ``w' gram w - 2 cross' w``.

    ``gram`` (c, c): sums of products of the candidates' cross-validated predictions (over spots
    and genes, each gene weighted); ``cross`` (c,): the same with the measured values. This is the
    least-squares fit of the measured values by a convex combination of the candidates' predictions,
    solved as non-negative least squares with the sum-to-one constraint as a heavily weighted row.
    Weights under ``min_weight`` are dropped and the rest rescaled.
    """
    gram = np.asarray(gram, dtype=np.float64)
    cross = np.asarray(cross, dtype=np.float64)
    c = len(cross)
    if c == 1:
        return np.ones(1)
    scale = max(float(np.trace(gram)) / c, 1e-300)
    # a whisker of ridge: identical candidates (e.g. an H&E term that the ridge turns off) keep the
    # Gram matrix positive definite, and split their weight evenly instead of arbitrarily
    h = gram + 1e-9 * scale * np.eye(c)
    low = np.linalg.cholesky(h)  # h = L L'
    a = low.T
    b = np.linalg.solve(low, cross)  # |a w - b|^2 = w' h w - 2 cross' w + const
    big = 1e3 * np.sqrt(scale)
    w, _ = nnls(np.vstack([a, np.full((1, c), big)]), np.concatenate([b, [big]]), maxiter=50 * c)
    if not np.isfinite(w).all() or w.sum() <= 0:
        w = np.zeros(c)
        w[int(np.argmin(np.diag(gram) - 2 * cross))] = 1.0
    w = w / w.sum()
    w[w < min_weight] = 0.0
    return w / w.sum()


def _denoise(x: np.ndarray, cols: np.ndarray, basis, k: int, rows=None) -> np.ndarray:
    mean, scale, vt = basis
    return reconstruct(x if rows is None else x[rows], mean, scale, vt, k, cols)


@dataclass
class BasePredictor:
    """The best non-learned predictor of a slide (see the module notes).

    Parameters
    ----------
    n_folds, repeats
        K-fold cross-validation over the measured spots, repeated with different partitions.
    seed
        Seed of the partitions (and of the crops on large slides).
    components
        Candidate PCA components.
    use_histology
        Whether H&E candidates may be tried (when features are given to :meth:`fit`).
    require_histology
        Only H&E candidates (the user asked for the H&E term; needs features).
    clip_histology
        Clip the H&E term's predictors at targets to their range at the measured spots (the
        default; see :meth:`~.ridge.FeatureTerm.fit`).
    selection
        ``"stack"`` (default): convex weights over the candidates (see the module notes);
        ``"one-se"``: the one-standard-error rule; ``"lowest"``: the lowest error (for comparisons,
        see ``benchmarks/base_choice.py``).

    Attributes (after :meth:`fit`)
    ------------------------------
    mixture
        ``((BaseChoice, weight), ...)``: the candidates the predictor is made of, heaviest first
        (one, of weight 1, unless stacked).
    choice
        The heaviest :class:`BaseChoice` of the mixture.
    kriging
        The fitted :class:`~.kriging.Kriging` smoother.
    cv_errors
        Candidate label -> cross-validated error (variance-normalised mean squared error).
    """

    n_folds: int = 5
    repeats: int = 2
    seed: int = 0
    components: tuple = COMPONENTS
    use_histology: bool = True
    require_histology: bool = False
    clip_histology: bool = True
    selection: str = "stack"
    choice: BaseChoice = field(default_factory=BaseChoice)
    mixture: tuple = ((BaseChoice(), 1.0),)
    cv_errors: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, not {self.selection!r}")

    def fit(
        self,
        phys: np.ndarray,
        values: np.ndarray,
        all_genes=None,
        target_cols: np.ndarray | None = None,
        features: np.ndarray | None = None,
    ) -> BasePredictor:
        """Choose and fit the predictor on the measured spots.

        Parameters
        ----------
        phys
            (m, 2) physical positions of the measured spots (pitch units).
        values
            (m, G) their values for the genes to predict.
        all_genes
            (m, n) their values over many genes (dense or sparse) for cross-gene denoising, with
            the genes to predict at columns ``target_cols``; ``None``: no PCA candidates.
        features
            (m, F) per-spot image features (H&E); ``None``: no H&E candidates.
        """
        self.phys = np.asarray(phys, dtype=np.float64)
        self.values = np.asarray(values, dtype=np.float64)
        m, g = self.values.shape
        self.x = None if all_genes is None else as_matrix(all_genes)
        self.cols = None if target_cols is None else np.asarray(target_cols, dtype=np.int64)
        self.features = None if features is None else np.asarray(features, dtype=np.float64)
        self.kriging = Kriging.fit(self.phys, self.values, seed=self.seed)
        use_he = self.use_histology and self.features is not None
        cands = candidates(m, 0 if self.x is None else self.x.shape[1], use_he, self.components)
        if self.require_histology and use_he:
            cands = [c for c in cands if c.histology]
        self.cv_errors = {}
        mixture = ((cands[0], 1.0),)
        if m >= MIN_CV_SPOTS and len(cands) > 1:
            errs, per_spot, gram, cross = self._cross_validate(cands)
            self.cv_errors = {c.label: float(e) for c, e in zip(cands, errs)}
            if self.selection == "stack":
                w = stack_weights(gram, cross)
                mixture = tuple((cands[i], float(w[i])) for i in np.flatnonzero(w))
            else:
                pick = one_se_choice(cands, errs, per_spot) if self.selection == "one-se" else int(np.argmin(errs))
                mixture = ((cands[pick], 1.0),)
        self._set_mixture(mixture)
        self._refit()
        self.x = None  # only fitting needs it (a real-size slide's is ~1 GB)
        return self

    # ------------------------------------------------------------------ fitting one candidate
    def _fit_smoother(self, choice: BaseChoice, rows: np.ndarray, basis=None, solver=None):
        """Denoised values, their mean and the kriging solver, fitted on spots ``rows``."""
        y = self.values[rows]
        den = y if not choice.components else _denoise(self.x, self.cols, basis, choice.components, rows)
        return den, den.mean(axis=0), solver if solver is not None else self.kriging.on(self.phys[rows])

    def _fit_term(self, den, mu, solver, rows: np.ndarray) -> FeatureTerm | None:
        """The H&E term of the smoother's leave-one-out residual, fitted on spots ``rows``."""
        f = self.features[rows]
        f_loo = getattr(solver, "_features_loo", None)  # the same for every candidate of a fold
        if f_loo is None:
            f_loo = solver._features_loo = solver.loo(f - f.mean(axis=0))
        return FeatureTerm.fit(f, f_loo, self.values[rows] - (mu + solver.loo(den - mu)), clip=self.clip_histology)

    def _cross_validate(self, cands: list[BaseChoice]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Cross-validated error of every candidate (one value each), and per spot (candidates x
        spots cross-validated, averaged over the repeats); and the sums of products of the
        candidates' cross-validated predictions with each other (c, c) and with the measured values
        (c,), over spots, genes and repeats, each gene divided by its variance (for the stack)."""
        idx = np.arange(len(self.phys))
        if len(idx) > MAX_CV_SPOTS:
            from .kriging import _crops

            idx = _crops(self.phys, MAX_CV_SPOTS, np.random.default_rng(self.seed), n_crops=1)[0]
        m = len(idx)
        gw = gene_weights(self.values[idx])
        per_spot = np.zeros((len(cands), m))
        gram = np.zeros((len(cands), len(cands)))
        cross = np.zeros(len(cands))
        sw = np.sqrt(gw)
        ks = sorted({c.components for c in cands if c.components})
        repeats = self.repeats if m < MANY_SPOTS else 1  # many spots: one partition is precise enough
        for r in range(repeats):
            folds = np.random.default_rng(self.seed + r).permutation(m) % self.n_folds
            for f in range(self.n_folds):
                at = np.flatnonzero(folds == f)
                te, tr = idx[at], idx[folds != f]
                bases = {}
                if ks and self.x is not None:
                    for st in (False, True):
                        bases[st] = pca_basis(self.x[tr], max(ks), st)
                fitted = {}
                solver = self.kriging.on(self.phys[tr])
                preds = np.empty((len(cands), len(te) * self.values.shape[1]))
                for i, c in enumerate(cands):
                    key = (c.components, c.standardised)
                    if key not in fitted:
                        fitted[key] = self._fit_smoother(c, tr, bases.get(c.standardised), solver)
                    den, mu, solver = fitted[key]
                    term = self._fit_term(den, mu, solver, tr) if c.histology else None
                    pred = self._predict_with(den, mu, solver, term, self.phys[te], tr, te)
                    e = (np.maximum(pred, 0.0) - self.values[te]) ** 2
                    per_spot[i, at] += (e * gw).sum(axis=1)
                    preds[i] = (pred * sw).ravel()  # unclipped: the stack is linear in its members
                gram += preds @ preds.T
                cross += preds @ (self.values[te] * sw).ravel()
        per_spot /= repeats * max(1, self.values.shape[1])
        return per_spot.mean(axis=1), per_spot, gram, cross

    def _predict_with(self, den, mu, solver, term, dst, src_rows, dst_rows=None, features_dst=None):
        g = den.shape[1]
        if term is None:
            return mu + solver.predict(den - mu, dst)
        f = self.features[src_rows]
        fd = self.features[dst_rows] if features_dst is None else features_dst
        sm = solver.predict(np.hstack([den - mu, f - term.centre]), dst)
        return mu + sm[:, :g] + term.at(fd, sm[:, g:])

    def _set_mixture(self, mixture) -> None:
        """Keep ``((BaseChoice, weight), ...)`` heaviest first, weights summing to one."""
        merged: dict[BaseChoice, float] = {}
        for c, w in mixture:
            if w > 0:
                merged[c] = merged.get(c, 0.0) + float(w)  # the same member twice: one, both weights
        total = sum(merged.values())
        pairs = sorted(((c, w / total) for c, w in merged.items()), key=lambda p: -p[1])
        self.mixture = tuple(pairs)
        self.choice = pairs[0][0]

    def _refit(self) -> None:
        """Fit every member of the mixture on all measured spots and merge them into one predictor:
        the weighted denoised values (one kriging smoother serves them all) and the weighted H&E
        coefficients (every member's term has the same predictors)."""
        rows = slice(None)  # every spot (a view: no copy of the gene matrix)
        solver = self.kriging.on(self.phys)
        den_mix = beta = term = None
        # one basis per kind of PCA, of the most components a member uses (the top k of it are the k basis)
        most = {}
        for c, _ in self.mixture:
            if c.components:
                most[c.standardised] = max(most.get(c.standardised, 0), c.components)
        bases = {st: pca_basis(self.x, k, st) for st, k in most.items()}
        for c, w in self.mixture:
            den, mu, solver = self._fit_smoother(c, rows, bases.get(c.standardised), solver)
            den_mix = w * den if den_mix is None else den_mix + w * den
            t = self._fit_term(den, mu, solver, rows) if c.histology else None
            if t is not None and t.active:
                beta = w * t.beta if beta is None else beta + w * t.beta
                term = term or t  # the predictors (and their standardisation) are the same for every member
        self.den, self.mu, self.solver = den_mix, den_mix.mean(axis=0), solver
        self.term = None if term is None else dataclasses.replace(term, beta=beta)
        if self.term is None and any(c.histology for c, _ in self.mixture):
            # no member's H&E term explains anything: the members are what they are without one
            self._set_mixture([(dataclasses.replace(c, histology=False), w) for c, w in self.mixture])

    # ------------------------------------------------------------------ prediction
    @property
    def uses_histology(self) -> bool:
        """Whether the fitted predictor has an H&E term (the slide's image explains something)."""
        return self.term is not None

    def predict_parts(self, dst: np.ndarray, features_dst: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(t, G) predictions at ``dst`` from all measured spots, and the H&E term's part of them
        (zeros without a term), from one smoothing pass."""
        dst = np.asarray(dst, np.float64)
        g = self.values.shape[1]
        if self.term is None:
            return self.mu + self.solver.predict(self.den - self.mu, dst), np.zeros((len(dst), g))
        if features_dst is None:
            raise ValueError("this base predictor uses the H&E term: give features_dst")
        sm = self.solver.predict(np.hstack([self.den - self.mu, self.features - self.term.centre]), dst)
        term = self.term.at(features_dst, sm[:, g:])
        return self.mu + sm[:, :g] + term, term

    def predict(
        self, dst: np.ndarray, features_dst: np.ndarray | None = None, sources: np.ndarray | None = None
    ) -> np.ndarray:
        """(t, G) predictions at physical positions ``dst`` (not clipped).

        ``features_dst`` (t, F): the image features there (needed when :attr:`uses_histology`).
        ``sources``: indices of the measured spots to predict from (default: all), with the fitted
        denoising, smoother and H&E coefficients kept (e.g. to predict the measured lattice from a
        sub-lattice of it, as the network's training does).
        """
        if self.term is not None and features_dst is None:
            raise ValueError("this base predictor uses the H&E term: give features_dst")
        if sources is None:
            rows, solver = np.arange(len(self.phys)), self.solver
        else:
            rows = np.asarray(sources, dtype=np.int64)
            solver = self.kriging.on(self.phys[rows])
        return self._predict_with(
            self.den[rows], self.mu, solver, self.term, np.asarray(dst, np.float64), rows, features_dst=features_dst
        )

    def smooth(self, dst: np.ndarray, sources: np.ndarray | None = None) -> np.ndarray:
        """(t, G) the smoother's part of the prediction at ``dst`` (without the H&E term), from the
        measured spots ``sources`` (default: all) with the fitted denoising and kriging parameters.
        This is what the networks start from (:mod:`napari_s2s.core.s2s`)."""
        dst = np.asarray(dst, np.float64)
        if sources is None:
            return self.mu + self.solver.predict(self.den - self.mu, dst)
        rows = np.asarray(sources, dtype=np.int64)
        return self.mu + self.kriging.on(self.phys[rows]).predict(self.den[rows] - self.mu, dst)

    def term_at(self, dst: np.ndarray, features_dst: np.ndarray, sources: np.ndarray | None = None) -> np.ndarray:
        """(t, G) the H&E term alone at physical positions ``dst`` (zeros without one), with the
        features smoothed from the measured spots ``sources`` (indices; default: all), as
        :meth:`predict` with the same ``sources`` adds it."""
        dst = np.asarray(dst, np.float64)
        if self.term is None:
            return np.zeros((len(dst), self.values.shape[1]))
        if sources is None:
            sm = self.solver.predict(self.features - self.term.centre, dst)
        else:
            rows = np.asarray(sources, dtype=np.int64)
            sm = self.kriging.on(self.phys[rows]).predict(self.features[rows] - self.term.centre, dst)
        return self.term.at(features_dst, sm)

    def term_loo(self) -> np.ndarray:
        """(m, G) the H&E term at the measured spots, from their leave-one-out smoothed features
        (what the term explains at each spot without the spot itself; zeros without a term)."""
        if self.term is None:
            return np.zeros_like(self.values)
        return self.term.at(self.features, self.solver.loo(self.features - self.term.centre))

    def refit(
        self,
        phys: np.ndarray,
        values: np.ndarray,
        kriging: Kriging,
        choice,
        all_genes=None,
        target_cols: np.ndarray | None = None,
        features: np.ndarray | None = None,
    ) -> BasePredictor:
        """Fit a known choice with known kriging parameters (no cross-validation), e.g. for a saved
        model applied to its slide again or to other genes of it.

        ``choice``: a :class:`BaseChoice`, or a mixture ``((BaseChoice, weight), ...)`` (see
        :attr:`mixture`). Members that need more principal components than the gene matrix has
        lose their denoising; without ``features`` they lose their H&E term.
        """
        self.phys = np.asarray(phys, dtype=np.float64)
        self.values = np.asarray(values, dtype=np.float64)
        self.x = None if all_genes is None else as_matrix(all_genes)
        self.cols = None if target_cols is None else np.asarray(target_cols, dtype=np.int64)
        self.features = None if features is None else np.asarray(features, dtype=np.float64)
        self.kriging = kriging
        mixture = ((choice, 1.0),) if isinstance(choice, BaseChoice) else tuple(choice)
        kept = []
        for c, w in mixture:
            if c.components and (self.x is None or c.components >= min(self.x.shape)):
                c = BaseChoice(None, False, c.histology)
            kept.append((BaseChoice(c.components, c.standardised, c.histology and self.features is not None), w))
        self._set_mixture(kept)
        self.cv_errors = {}
        self._refit()
        self.x = None
        return self

    @property
    def label(self) -> str:
        """What the fitted predictor is, e.g. ``kriging + PCA 8 + H&E``, or for a stack its size and
        heaviest member, e.g. ``stack of 3, mainly kriging + H&E at 0.82`` (:attr:`mixture` and
        :meth:`describe` list every member)."""
        c, w = self.mixture[0]
        if len(self.mixture) == 1:
            return BaseChoice(c.components, c.standardised, c.histology and self.uses_histology).label
        return f"stack of {len(self.mixture)}, mainly {c.label} at {w:.2f}"

    def describe(self) -> dict:
        """JSON-able summary: the choice (the heaviest member), the mixture, the kriging parameters
        and the cross-validated errors."""
        return {
            "choice": self.label,
            "components": self.choice.components,
            "standardised": self.choice.standardised,
            "histology": self.uses_histology,
            "mixture": [
                {"components": c.components, "standardised": c.standardised, "histology": c.histology, "weight": w}
                for c, w in self.mixture
            ],
            "kriging": {"nu": self.kriging.nu, "ell": self.kriging.ell, "snr": self.kriging.snr},
            "cv_errors": dict(self.cv_errors),
        }


def mixture_from(info: dict, histology: bool = True) -> tuple:
    """The mixture ``((BaseChoice, weight), ...)`` of a :meth:`BasePredictor.describe` summary (a
    saved model's; summaries from before stacking hold one choice). ``histology=False`` drops the
    H&E terms (the slide has no image)."""
    members = info.get("mixture") or [
        {
            "components": info.get("components"),
            "standardised": info.get("standardised"),
            "weight": 1.0,
            "histology": info.get("histology"),
        }
    ]
    return tuple(
        (
            BaseChoice(m.get("components"), bool(m.get("standardised")), bool(m.get("histology")) and histology),
            float(m.get("weight", 1.0)),
        )
        for m in members
    )
