"""The widget's plain-Python parts: gene search, pasted lists, settings store, review table, state."""

from __future__ import annotations

import json
import os
import stat
from types import SimpleNamespace

import pytest

from napari_s2s.gui.gene_picker import parse_gene_list, search_genes, suggest
from napari_s2s.gui.review import ReviewTable
from napari_s2s.gui.settings import SettingsStore, WidgetSettings, config_dir
from napari_s2s.gui.state import TrainingState


def test_search_ranks_exact_prefix_substring(read_shared):
    genes = read_shared("her2st_C2").genes
    hits = search_genes(genes, "erbb2")
    assert hits[0] == "ERBB2"
    assert all("ERBB2" in h.upper() for h in hits)
    starts = [h.upper().startswith("KRT1") for h in search_genes(genes, "KRT1")]
    assert starts[0] and starts == sorted(starts, reverse=True)  # prefix matches before substrings
    assert "ERRB2" not in set(genes) and "ERBB2" in suggest("ERRB2", genes)
    assert search_genes(genes, "   ") == []
    assert len(search_genes(genes, "a", limit=7)) == 7


def test_pasted_list_maps_case_and_reports_unknown(read_shared):
    slide = read_shared("st_mouse_olfactory_bulb")  # Ensembl ids
    g0, g1 = slide.genes[0], slide.genes[1]
    parsed = parse_gene_list(f"{g0.lower()}, {g1}; {g0}\nENSMUSG_NOPE", slide.genes)
    assert parsed.found == [g0, g1]
    assert list(parsed.unknown) == ["ENSMUSG_NOPE"]
    assert "ENSMUSG_NOPE" in parsed.report()
    assert parse_gene_list("", slide.genes).found == []


def test_settings_round_trip_and_bad_files(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_S2S_CONFIG_DIR", str(tmp_path / "cfg"))
    assert config_dir() == tmp_path / "cfg"
    store = SettingsStore()
    assert store.load() == WidgetSettings()  # nothing saved yet
    s = WidgetSettings(
        preset="paper", cascades=2, budget_s=30, device="cpu", natural_images=False, seed=7, histology="auto"
    )
    store.save(s)
    assert SettingsStore().load() == s
    store.path.write_text("{not json")
    assert store.load() == WidgetSettings()
    store.path.write_text(
        json.dumps(
            {"preset": "huge", "device": "tpu", "seed": "x", "budget_s": 12, "histology": "always", "aux_genes": -3}
        )
    )
    got = store.load()
    assert (got.preset, got.device, got.seed, got.budget_s, got.histology) == ("fast", "auto", 0, 12.0, "auto")
    assert got.aux_genes == WidgetSettings().aux_genes
    over = s.config_overrides()
    assert over["cascades"] == 2 and "features" not in over and over["natural_images"] is False


def test_settings_feed_the_engine_config():
    from napari_s2s.gui.training import make_config

    s = WidgetSettings(preset="fast", features=8, budget_s=5, device="cpu", seed=4, aux_genes=12)
    cfg = make_config(s.preset, **s.config_overrides())
    assert (cfg.features, cfg.budget_s, cfg.device, cfg.seed, cfg.aux_genes) == (8, 5.0, "cpu", 4, 12)
    assert cfg.histology == "auto"  # the default: the H&E term where cross-validation keeps it
    s.histology = "off"
    assert make_config(s.preset, **s.config_overrides()).histology == "off"


def test_review_table_csv_round_trip(tmp_path):
    t = ReviewTable(slide="s", source="/x/s.h5ad")
    t.set_genes(["A", "B", "C"])
    t.set_status("A", "accepted")
    t.set_status("B", "flagged")
    t.set_comment("B", "noisy,\nedge")
    t.set_metrics({"A": {"pcc": 0.5, "rmse": 0.25}, "C": {"pcc": None, "rmse": 1.0}})
    with pytest.raises(ValueError):
        t.set_status("C", "maybe")
    back = ReviewTable.from_csv(t.to_csv(tmp_path / "sub" / "r.csv"))
    assert list(back.rows) == ["A", "B", "C"]
    assert back.rows["A"].status == "accepted" and back.rows["A"].pcc == 0.5
    assert back.rows["B"].comment == "noisy, edge" and back.rows["C"].pcc is None
    assert back.slide == "s" and back.source == "/x/s.h5ad"


def test_review_csv_gets_the_mode_of_a_normal_write(tmp_path):
    """Saved through core.checks.atomic_write: 0666 & ~umask, not mkstemp's 0600 (a lab's shared folder);
    an overwrite keeps the file's mode; nothing temporary is left beside it."""
    t = ReviewTable(slide="s", source="/x/s.h5ad")
    t.set_genes(["A"])
    old = os.umask(0o022)
    try:
        out = t.to_csv(tmp_path / "r.csv")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    out.chmod(0o640)
    t.set_status("A", "accepted")
    assert ReviewTable.from_csv(t.to_csv(out)).rows["A"].status == "accepted"
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]


def test_state_folds_progress_events():
    st = TrainingState()
    seen = []
    st.events.step.connect(seen.append)
    st.reset("starting")
    ev = SimpleNamespace(phase="train", step=5, max_steps=20, loss=0.5, elapsed_s=2.0, eta_s=6.0, message="")
    st.apply(ev)
    assert st.running and st.fraction() == 0.25 and st.losses == [(5, 0.5)]
    st.apply(SimpleNamespace(phase="train", step=6, max_steps=None, loss=0.4, elapsed_s=3.0, eta_s=1.0, message="x"))
    assert st.fraction() == 0.75 and st.message == "x" and seen[-1] == 6
    st.apply(SimpleNamespace(phase="stopped", step=6, max_steps=None, loss=0.4, elapsed_s=3.0, eta_s=0.0, message=""))
    assert not st.running and len(st.losses) == 2


def test_the_clock_moves_between_events_and_the_eta_counts_down():
    """Choosing the base predictor sends no event for seconds: the widget's clock ticks the state, so
    the elapsed time goes on and the ETA comes down by as much (never below 0, never once done)."""
    st = TrainingState()
    st.reset("starting")
    st.apply(SimpleNamespace(phase="prepare", step=0, max_steps=0, loss=None, elapsed_s=0.1, eta_s=60.0, message=""))
    st.tick(5.1)
    assert (st.elapsed_s, st.eta_s) == (5.1, 55.0) and st.fraction() == pytest.approx(5.1 / 60.1)
    st.tick(4.0)  # an older reading changes nothing
    assert st.elapsed_s == 5.1
    st.tick(100.0)
    assert st.eta_s == 0.0
    st.apply(SimpleNamespace(phase="done", step=0, max_steps=0, loss=None, elapsed_s=7.0, eta_s=0.0, message="ok"))
    st.tick(200.0)
    assert st.elapsed_s == 7.0
