"""Paired comparison of S2S levers that act after training: several blend rules and test-time
averaging, all applied to the SAME trained networks (one training run per slide and seed), so the
differences between them are not training noise.

Usage (from the repository root; one run per seed, two can run side by side on 2 cores)::

    python benchmarks/s2s_paired.py --seed 0 --out benchmarks/results/paired/default_s0.json
    python benchmarks/s2s_paired.py --seed 0 --config '{"base": "prior"}' \
        --out benchmarks/results/paired/prior_s0.json
    python benchmarks/s2s_paired.py --summarise benchmarks/results/paired/*.json \
        --md benchmarks/results/s2s_paired.md

Per slide (the hold-out task of ``run_s2s.py``: 1/4 measured, the 30 most variable genes), after
training the default engine (``fast``, ``--budget`` seconds, one torch thread):

* ``base``, ``net``: the base predictor alone, the networks alone;
* ``global``: the engine's result (one blend weight over all genes, least squares on the networks'
  out-of-fold predictions);
* ``gene``: one weight per gene, least squares per gene on the same out-of-fold predictions;
* ``gene_eb``: per-gene weights shrunk towards the global one (empirical Bayes: between-gene
  variance of the weights against their sampling variance);
* ``pcc``: one weight, the one of ``0, 0.05, ..., 1`` with the highest mean out-of-fold PCC over genes;
* ``tta``: the global weight, networks averaged over every lattice symmetry (test-time averaging).

Diagnoses of the networks' transfer from one lattice level to the next change one thing about a slide
before the hold-out task is built (``benchmarks/results/transfer_gap.md``): ``--thin T`` (counts
thinned), ``--crop N`` (the N spots nearest the centre), ``--coarsen`` (one coset of the sub-lattice,
double the pitch), ``--panel N`` (the N most variable genes only).

Only measured spots choose a weight; hidden spots only score. ``--config`` overrides engine
settings (JSON), e.g. ``{"base": "prior"}`` for networks whose cascade starts from the base
predictor's prediction.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import sys
import time
from pathlib import Path

import numpy as np
from run_benchmark import data_dir  # noqa: E402

SLIDES = (
    "her2st_B4.h5ad",
    "her2st_C2.h5ad",
    "st_breast_cancer_layer2.h5ad",
    "st_mouse_olfactory_bulb.h5ad",
    "visium_mouse_brain",
    "visium_mouse_brain_dg.h5ad",
)
RULES = ("base", "net", "global", "gene", "gene_eb", "pcc", "tta")


def per_gene_weights(c: dict, shrink: bool) -> np.ndarray:
    """Per-gene blend weights from the out-of-fold arrays ``c`` (truth, base, net, gw)."""
    t, b, n, gw = c["truth"], c["base"], c["net"], c["gw"]
    d, r = n - b, t - b
    dd, dr = (d * d).sum(0), (d * r).sum(0)
    ag = np.where(dd > 1e-12, dr / np.maximum(dd, 1e-12), 0.0)
    if not shrink:
        return np.clip(ag, 0, 1)
    res = r - ag * d
    s2 = (res * res).sum(0) / max(len(t) - 1, 1)
    se2 = s2 / np.maximum(dd, 1e-12) * 3.0  # a spot's ~3 phases are correlated pairs
    a0 = np.clip((gw * dr).sum() / max((gw * dd).sum(), 1e-12), 0, 1)
    tau2 = max(0.0, float(np.var(ag) - np.mean(se2)))
    return np.clip(a0 + tau2 / (tau2 + se2) * (ag - a0), 0, 1)


def pcc_weight(c: dict) -> float:
    """The weight on a 0.05 grid with the highest mean out-of-fold PCC over genes."""
    t, b, n = c["truth"], c["base"], c["net"]
    best, best_a = -np.inf, 0.0
    for a in np.linspace(0, 1, 21):
        p = b + a * (n - b)
        ok = [g for g in range(t.shape[1]) if t[:, g].std() > 0 and p[:, g].std() > 0]
        v = np.mean([np.corrcoef(t[:, g], p[:, g])[0, 1] for g in ok]) if ok else -np.inf
        if v > best + 1e-9:
            best, best_a = v, float(a)
    return best_a


def coarse_oof(members, prob, base, values, mu, sd, terms, features, device, captured: dict) -> dict:
    """The trained networks and the base one level *sparser* than they were trained (a diagnosis of
    how their gain moves with the lattice's pitch; ``--coarse``): each coset of the measured lattice
    as a slide of its own (:func:`~napari_s2s.core.s2s.train.coarse_problems`), a quarter of it kept,
    each network scored at its own fold's spots (which it never trained on), the base conditioned on
    the same kept spots. Rows as the out-of-fold arrays: ``coarse_truth``, ``coarse_base``,
    ``coarse_net`` (the scored genes ``gsel``), ``coarse_spots``."""
    from napari_s2s.core.data.lattice import physical
    from napari_s2s.core.s2s.blend import kept_sources, network_oof
    from napari_s2s.core.s2s.train import build_problem, coarse_problems

    args, kwargs = captured["build"]
    bound = inspect.signature(build_problem).bind(*args, **kwargs)
    bound.apply_defaults()
    a = bound.arguments
    rows, cols, kind, z, cfg, folds = a["rows"], a["cols"], a["kind"], a["z"], a["config"], a["folds"]
    gsel = captured["gsel"]
    phys = physical(rows, cols, kind)
    f_meas = None if features is None or not base.uses_histology else np.asarray(features(2 * rows, 2 * cols), float)
    truth, bas, net, spots = [], [], [], []
    for cp in coarse_problems(
        rows, cols, kind, z, cfg, a["recon"], a["covariates"], folds, a["bandwidth_ref"], prob.patch
    ):
        idx = cp.sources
        cp.targets = prob.targets
        oof = network_oof(members, cp, device, cfg.tile, gsel)
        if not len(oof.spots):
            continue
        g = idx[oof.spots]
        n = oof.network * sd[gsel] + mu[gsel]
        if terms is not None:
            n = n + terms[0][g][:, gsel]
        b = np.empty_like(n, dtype=float)
        for p in np.unique(oof.phases):
            sel = oof.phases == p
            src = idx[kept_sources(cp, int(p))]
            b[sel] = base.predict(phys[g[sel]], None if f_meas is None else f_meas[g[sel]], sources=src)[:, gsel]
        truth.append(values[g][:, gsel])
        bas.append(np.maximum(b, 0.0))
        net.append(np.maximum(n, 0.0))
        spots.append(g)
    if not truth:
        return {}
    cat = np.concatenate
    return {"coarse_truth": cat(truth), "coarse_base": cat(bas), "coarse_net": cat(net), "coarse_spots": cat(spots)}


def thinned(slide, share: float, seed: int):
    """``slide`` with each UMI kept with probability ``share`` (binomial thinning, seeded): the same
    tissue measured with a lower capture efficiency (a diagnosis of how the networks' gain depends on
    the counts per spot, ``--thin``); the slide itself when ``share`` is 1."""
    if share >= 1.0:
        return slide
    counts = slide.counts.copy().tocsr()
    rng = np.random.default_rng([int(seed), 0x7A1])
    counts.data = rng.binomial(np.round(counts.data).astype(np.int64), share).astype(counts.data.dtype)
    counts.eliminate_zeros()
    return dataclasses.replace(slide, counts=counts)


def spots_of(slide, keep: np.ndarray, rows: np.ndarray, cols: np.ndarray):
    """A new slide of the spots ``keep`` of ``slide`` (same images), at array coordinates ``rows, cols``
    (its lattice geometry refitted from them and the spots' pixel positions)."""
    pix = None if slide.pixel_xy is None else slide.pixel_xy[keep]
    return dataclasses.replace(
        slide,
        counts=slide.counts[keep],
        barcodes=slide.barcodes[keep],
        array_row=rows,
        array_col=cols,
        in_tissue=slide.in_tissue[keep],
        pixel_xy=pix,
        geometry=None,
        n_spots_total=None,
    )


def cropped(slide, n_spots: int):
    """``slide`` cut down to its ``n_spots`` usable spots nearest the centre of its usable spots (by
    physical position): the same tissue and counts on a smaller slide (a diagnosis of how the
    networks' gain depends on the slide's size, ``--crop``); the slide itself when ``n_spots`` is 0."""
    if n_spots <= 0:
        return slide
    from napari_s2s.core.data.lattice import physical

    use = np.flatnonzero(slide.usable())
    pos = physical(slide.array_row[use], slide.array_col[use], slide.kind)
    d = ((pos - pos.mean(0)) ** 2).sum(1)
    keep = np.sort(use[np.argsort(d, kind="stable")[:n_spots]])
    return spots_of(slide, keep, slide.array_row[keep], slide.array_col[keep])


def coarsened(slide, on: bool):
    """``slide`` with only one coset of its keep-1/4 sub-lattice, laid out as a lattice of its own
    (double the physical pitch, a quarter of the spots; the same counts per spot): a diagnosis of how
    the networks' gain depends on the lattice's physical pitch (``--coarsen``)."""
    if not on:
        return slide
    from napari_s2s.core.s2s.sampling import keep_quarter

    parity = 0
    if slide.kind == "hex":
        parity = int(np.bincount((slide.array_row + slide.array_col) % 2, minlength=2).argmax())
    r0, c0 = 0, parity
    keep = np.flatnonzero(keep_quarter(slide.array_row, slide.array_col, slide.kind, (r0, c0)))
    return spots_of(slide, keep, (slide.array_row[keep] - r0) // 2, (slide.array_col[keep] - c0) // 2)


def panel(slide, n_genes: int):
    """``slide`` with only its ``n_genes`` most variable genes (over all its spots: a diagnosis of how
    the networks' gain depends on the size of the gene panel, ``--panel``; the Visium slide has 100)."""
    if n_genes <= 0 or n_genes >= slide.n_genes:
        return slide
    idx = slide.gene_indices(slide.top_variable_genes(n_genes))
    return dataclasses.replace(slide, counts=slide.counts[:, idx], genes=slide.genes[idx])


def run(
    seed: int,
    budget: float,
    config: dict,
    only: list[str] | None,
    phase: int = 0,
    n_genes: int = 30,
    arrays: Path | None = None,
    coarse: bool = False,
    thin: float = 1.0,
    crop: int = 0,
    coarsen: bool = False,
    n_panel: int = 0,
) -> dict:
    import napari_s2s.core.s2s.engine as eng
    from napari_s2s.core.data.io import read_slide
    from napari_s2s.core.evaluation.benchmark import build_holdout, score, summarise
    from napari_s2s.core.methods.s2s import S2SMethod
    from napari_s2s.core.s2s.engine import S2SImputer, cross_gene_matrix

    captured: dict = {}
    weight_estimate = eng.weight_estimate
    oof_genes = eng.oof_genes
    network_oof = eng.network_oof

    def spy_weight(truth, base, network, gw, *args, **kwargs):  # the out-of-fold arrays the engine weighs
        captured.update(truth=np.asarray(truth, float), base=np.asarray(base, float))
        captured.update(net=np.asarray(network, float), gw=np.asarray(gw, float))
        return weight_estimate(truth, base, network, gw, *args, **kwargs)

    def spy_genes(prob, n_members, seed=0):
        captured["gsel"] = oof_genes(prob, n_members, seed)
        return captured["gsel"]

    def spy_oof(*args, **kwargs):  # which spot and phase each out-of-fold row is
        oof = network_oof(*args, **kwargs)
        captured.update(spots=np.asarray(oof.spots), phases=np.asarray(oof.phases))
        return oof

    build_problem = eng.build_problem
    choose_alpha = S2SImputer._choose_alpha

    def spy_build(*args, **kwargs):  # the training problem's inputs, for the coarse level below
        captured["build"] = (args, kwargs)
        return build_problem(*args, **kwargs)

    def spy_choose(self, members, prob, base, values, mu, sd, terms, rows, cols, kind, features, device, *more):
        out = choose_alpha(self, members, prob, base, values, mu, sd, terms, rows, cols, kind, features, device, *more)
        if coarse and "gsel" in captured:
            captured.update(coarse_oof(members, prob, base, values, mu, sd, terms, features, device, captured))
        return out

    eng.weight_estimate, eng.oof_genes, eng.network_oof = spy_weight, spy_genes, spy_oof
    eng.build_problem, S2SImputer._choose_alpha = spy_build, spy_choose
    out = {}
    for fname in SLIDES:
        if only and not any(fname.startswith(o) if o[:1] != "=" else Path(fname).stem == o[1:] for o in only):
            continue
        slide = read_slide(data_dir() / fname)
        slide = thinned(cropped(coarsened(panel(slide, n_panel), coarsen), crop), thin, seed)
        task, truth, meta = build_holdout(slide, n_genes=n_genes, seed=seed, budget_s=budget, phase=phase)
        # the engine's inputs as the benchmark's s2s makes them (H&E term, and channels with ``he_channels``)
        cfg, lr, lc, tr, tc, feats, cov = S2SMethod(**config).task_inputs(task)
        values = np.asarray(task.measured_values, np.float32)
        allg = cross_gene_matrix(task.measured_all_genes)
        captured.clear()
        imp = S2SImputer(cfg)
        t0 = time.time()
        sizes = slide.size_factors()[meta["measured_mask"]] if cfg.loss in ("poisson", "nb") else None
        inputs = dict(all_genes=allg, covariates=cov, features=feats, size_factors=sizes)
        for _ in imp.fit_arrays_iter(lr, lc, task.kind, values, list(task.genes), **inputs):
            pass
        seconds = time.time() - t0
        args = (lr, lc, task.kind, values, tr, tc, allg, cov, feats)
        net = imp.predict_arrays(*args, alpha=1.0).astype(float)
        bas = imp.predict_arrays(*args, alpha=0.0).astype(float)
        t1 = time.time()
        net_tta = imp.predict_arrays(*args, tta=True, alpha=1.0).astype(float)
        tta_s = time.time() - t1
        g = values.shape[1]
        weights = {"base": np.zeros(g), "net": np.ones(g), "global": np.full(g, imp.alpha)}
        weights["tta"] = weights["global"]
        if "truth" in captured:
            gsel = captured["gsel"]
            for lab, shrink in (("gene", False), ("gene_eb", True)):
                a = np.full(g, imp.alpha)
                a[gsel] = per_gene_weights(captured, shrink)
                weights[lab] = a
            weights["pcc"] = np.full(g, pcc_weight(captured))
        res = {}
        for lab, a in weights.items():
            pred = bas + a[None, :] * ((net_tta if lab == "tta" else net) - bas)
            s = summarise(score(task, truth, pred, meta), 0)
            res[lab] = (s["pcc_median"], s["rmse_median"], float(np.mean(a)))
        name = meta["name"]
        if arrays is not None and "truth" in captured:  # everything a blend rule needs, to study rules offline
            arrays.mkdir(parents=True, exist_ok=True)
            oof = {f"oof_{k}": captured[k] for k in ("truth", "base", "net", "gw", "gsel", "spots", "phases")}
            oof.update({k: v for k, v in captured.items() if k.startswith("coarse_")})
            hidden = {"hidden_truth": np.asarray(truth, float), "hidden_base": bas, "hidden_net": net}
            np.savez_compressed(arrays / f"{name}_s{seed}_p{phase}_g{n_genes}.npz", alpha=imp.alpha, **oof, **hidden)
        out[name] = {"res": res, "steps": imp.stats["steps"], "seconds": seconds, "base": imp.stats["base"]}
        out[name]["tta_s"] = tta_s
        line = " ".join(f"{k} {p:.3f}/{e:.3f}(a{a:.2f})" for k, (p, e, a) in res.items())
        print(name, "steps", imp.stats["steps"], f"{seconds:.0f}s tta {tta_s:.1f}s", line, flush=True)
    return out


def summarise_runs(paths: list[str]) -> str:
    """Markdown: per configuration, rule and slide, PCC / RMSE averaged over the seeds run."""
    runs: dict[str, list[dict]] = {}
    for p in paths:
        stem = Path(p).stem  # CONFIG_sSEED
        cfg = stem.rsplit("_s", 1)[0]
        runs.setdefault(cfg, []).append(json.loads(Path(p).read_text()))
    lines = ["# Paired S2S levers (same trained networks per slide and seed)", ""]
    lines.append("Made by `python benchmarks/s2s_paired.py` (see its docstring). Each cell: PCC / RMSE, the")
    lines.append("median over genes on the hidden spots, averaged over the seeds run; last column: mean over slides.")
    for cfg, rs in runs.items():
        slides = list(rs[0])
        lines += ["", f"## `{cfg}` ({len(rs)} seeds)", ""]
        lines.append("| rule | " + " | ".join(slides) + " | mean |")
        lines.append("|---|" + "---:|" * (len(slides) + 1))
        for rule in RULES:
            cells, ps, es = [], [], []
            for s in slides:
                vals = [r[s]["res"][rule] for r in rs if s in r and rule in r[s]["res"]]
                if not vals:
                    cells.append("—")
                    continue
                p, e = float(np.mean([v[0] for v in vals])), float(np.mean([v[1] for v in vals]))
                ps.append(p)
                es.append(e)
                cells.append(f"{p:.3f} / {e:.3f}")
            mean = f"{np.mean(ps):.4f} / {np.mean(es):.4f}" if len(ps) == len(slides) else "—"
            lines.append(f"| {rule} | " + " | ".join(cells) + f" | {mean} |")
        steps = " · ".join(f"{s}: {np.mean([r[s]['steps'] for r in rs]):.0f}" for s in slides)
        tta = " · ".join(f"{s}: {np.mean([r[s].get('tta_s', np.nan) for r in rs]):.1f}" for s in slides)
        lines += ["", f"Steps: {steps}.", "", f"Seconds of the test-time averaged pass (networks alone): {tta}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=float, default=120.0)
    ap.add_argument("--config", default="{}", help="engine overrides as JSON")
    ap.add_argument("--phase", type=int, default=0, help="measured coset 0-3 (build_holdout phase)")
    ap.add_argument(
        "--slides", default=None, help="comma-separated slide name prefixes, or =NAME for one slide (default: all six)"
    )
    ap.add_argument("--genes", type=int, default=30, help="how many genes (the most variable) each task scores")
    ap.add_argument("--arrays", help="folder for each task's out-of-fold and hidden-spot arrays (.npz)")
    ap.add_argument("--out", help="JSON to write")
    ap.add_argument(
        "--coarse", action="store_true", help="with --arrays: also the networks' gain one level sparser (a diagnosis)"
    )
    ap.add_argument(
        "--thin", type=float, default=1.0, help="keep each UMI with this probability (a diagnosis; default 1: all)"
    )
    ap.add_argument(
        "--crop", type=int, default=0, help="keep the N spots nearest the slide's centre (a diagnosis; default 0: all)"
    )
    ap.add_argument(
        "--coarsen", action="store_true", help="one coset of the slide's keep-1/4 sub-lattice only (a diagnosis)"
    )
    ap.add_argument("--panel", type=int, default=0, help="keep the slide's N most variable genes (a diagnosis)")
    ap.add_argument("--summarise", nargs="+", help="JSON files (CONFIG_sSEED.json) to summarise instead")
    ap.add_argument("--md", help="Markdown summary to write (with --summarise)")
    a = ap.parse_args(argv)
    if a.summarise:
        text = summarise_runs(a.summarise)
        if a.md:
            Path(a.md).write_text(text)
        print(text)
        return 0
    if not a.out:
        ap.error("--out is required (or --summarise)")
    only = a.slides.split(",") if a.slides else None
    arrays = Path(a.arrays) if a.arrays else None
    res = run(
        a.seed,
        a.budget,
        json.loads(a.config),
        only,
        a.phase,
        a.genes,
        arrays,
        a.coarse,
        a.thin,
        a.crop,
        a.coarsen,
        a.panel,
    )
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
