"""Dask distributed for cohorts: a local cluster or a running scheduler, and tasks that survive dying workers.

- :func:`open_client` starts a :class:`distributed.LocalCluster` (one worker process per core, one thread
  each) or connects to ``tcp://host:port`` with a connect timeout, and closes what it started.
- :func:`run_tasks` submits tasks and yields their results as they finish; a task whose worker died
  (``KilledWorker``: a crash, the memory limit, a node lost) is submitted again, up to ``retries`` times.

``distributed`` is imported on first use; without it the error says how to install it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from ..errors import SlideError

INSTALL_HINT = 'pip install "dask[distributed]"'

#: Seconds to wait for a scheduler to answer before giving up (``--connect-timeout``).
CONNECT_TIMEOUT = 5.0


def require_distributed():
    """The ``distributed`` module, or a one-line :class:`SlideError` saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise SlideError(None, f"running on a Dask cluster needs Dask distributed: {INSTALL_HINT}") from None
    return distributed


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def has_dashboard() -> bool:
    """Whether the Dask dashboard can be served (it needs bokeh)."""
    return importlib.util.find_spec("bokeh") is not None


@contextmanager
def open_client(
    workers: int | None = None,
    scheduler: str | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
    say: Callable[[str], None] | None = None,
):
    """A Dask client: to ``scheduler`` when given, else to a new local cluster of ``workers`` processes.

    Parameters
    ----------
    workers
        Local worker processes (default: one per core); each runs one task at a time.
    scheduler
        Address of a running scheduler (``tcp://host:8786``); its workers must see the same paths.
    connect_timeout
        Seconds to wait for the scheduler.
    say
        Called with one line about the cluster (its size and dashboard).

    Raises
    ------
    SlideError
        ``distributed`` missing, a bad worker count, a scheduler that does not answer in time.
    """
    distributed = require_distributed()
    say = say or (lambda msg: None)
    if scheduler:
        check_reachable(scheduler, connect_timeout)
        try:
            client = distributed.Client(scheduler, timeout=connect_timeout, set_as_default=False)
        except Exception as exc:  # any failure to talk to the scheduler is the user's address or cluster
            raise SlideError(None, f"cannot connect to the Dask scheduler at {scheduler}: {_line(exc)}") from None
        try:
            n = len(client.scheduler_info().get("workers", {}))
            dash = f", dashboard {client.dashboard_link}" if client.dashboard_link else ""
            note = "" if n else " (no worker yet: tasks wait until workers join)"
            say(f"connected to {scheduler}: {n} worker(s){note}{dash}")
            yield client
        finally:
            client.close()
        return
    n = default_workers() if workers is None else int(workers)
    if n < 1:
        raise SlideError(None, f"--workers must be >= 1, not {workers}")
    dashboard = has_dashboard()
    cluster = distributed.LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":8787" if dashboard else None,
        silence_logs=logging.CRITICAL,
        # a dead worker's task comes back to the client at once; run_tasks decides on retries
        scheduler_kwargs={"allowed_failures": 0},
    )
    try:
        client = distributed.Client(cluster, set_as_default=False)
        try:
            dash = (
                f"dashboard {client.dashboard_link}"
                if dashboard
                else "no dashboard (it needs bokeh: pip install bokeh)"
            )
            say(f"local Dask cluster: {n} worker process(es), 1 thread each; {dash}")
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def check_reachable(address: str, timeout: float) -> None:
    """Fail fast, in one line, when nothing listens at a ``tcp://host:port`` address."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "tls"):
        return  # other transports (inproc, ucx): leave it to distributed
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise SlideError(None, f"--scheduler {address!r}: expected tcp://host:port") from None
    if not host or not port:
        raise SlideError(None, f"--scheduler {address!r}: expected tcp://host:port")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except socket.gaierror:
        raise SlideError(None, f"cannot connect to the Dask scheduler at {address}: unknown host {host}") from None
    except TimeoutError:
        raise SlideError(
            None, f"cannot connect to the Dask scheduler at {address}: no answer within {timeout:g} s"
        ) from None
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise SlideError(None, f"cannot connect to the Dask scheduler at {address}: {why.lower()}") from None


def run_tasks(
    client,
    calls: dict,
    retries: int = 1,
    on_retry: Callable[[object, int, str], None] | None = None,
) -> Iterator[tuple[object, bool, object]]:
    """Submit ``calls`` and yield ``(ident, ok, result or error message)`` as each finishes.

    Parameters
    ----------
    client
        A Dask client.
    calls
        ``{ident: (label, function, args)}``; ``label`` names the task on the dashboard.
    retries
        How many times a task whose worker died is submitted again.
    on_retry
        Called with ``(ident, attempt, reason)`` before a task is submitted again.

    Interrupting the iteration (Ctrl-C, ``close()``) cancels the tasks that have not finished.
    """
    distributed = require_distributed()
    from distributed.scheduler import KilledWorker

    attempts = dict.fromkeys(calls, 0)
    owner = {}

    def submit(ident):
        label, fn, args = calls[ident]
        fut = client.submit(fn, *args, key=f"{label}-{uuid.uuid4().hex[:8]}", retries=0)
        owner[fut.key] = ident
        return fut

    futures = [submit(i) for i in calls]
    ac = distributed.as_completed(futures, loop=client.loop)
    live = {f.key: f for f in futures}
    try:
        for fut in ac:
            ident = owner[fut.key]
            live.pop(fut.key, None)
            if fut.status == "finished":
                yield ident, True, fut.result()
                continue
            if fut.status == "cancelled":
                yield ident, False, "cancelled (the cluster lost the task)"
                continue
            exc = fut.exception() if fut.status == "error" else None
            if exc is None or isinstance(exc, KilledWorker):  # its worker died, or its result was lost
                if attempts[ident] < retries:
                    attempts[ident] += 1
                    if on_retry is not None:
                        on_retry(ident, attempts[ident], "its worker died")
                    new = submit(ident)
                    live[new.key] = new
                    ac.add(new)
                    continue
                n = attempts[ident] + 1
                yield ident, False, f"the worker died while running it ({n} attempt{'s' * (n > 1)})"
                continue
            yield ident, False, _line(exc)
    finally:
        if live:
            client.cancel(list(live.values()))


def _line(exc: BaseException) -> str:
    """``Type: message`` on one line."""
    msg = " ".join(str(exc).split())
    if isinstance(exc, SlideError):
        return msg
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
