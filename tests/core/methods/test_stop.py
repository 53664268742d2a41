"""Methods that train can be stopped from another thread (the dock's Stop, closing napari during a
validation): ``predict`` then ends within about one training step, raising ``MethodStopped``
(``s2s-he``: tests/core/methods/test_histology.py)."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from napari_s2s.core.evaluation.benchmark import run_method
from napari_s2s.core.methods import MethodStopped


@pytest.mark.parametrize("name", ["s2s", "dist"])
def test_stop_ends_a_running_predict(name, square_task):
    task = dataclasses.replace(square_task(n=24, genes=3, noise=0.1), budget_s=120.0)
    seen = []
    outcome = {}

    def target():
        try:
            outcome["pred"] = run_method(name, task, on_method=seen.append)
        except MethodStopped as exc:
            outcome["stopped"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    while not seen and time.perf_counter() - t0 < 30:
        time.sleep(0.05)
    assert seen and seen[0].name == name  # run_method hands the method over before it predicts
    time.sleep(1.0)  # training under way
    t_stop = time.perf_counter()
    seen[0].stop()
    thread.join(60)
    assert not thread.is_alive() and "stopped" in outcome and "pred" not in outcome
    assert time.perf_counter() - t_stop < 30  # not the 120 s budget
