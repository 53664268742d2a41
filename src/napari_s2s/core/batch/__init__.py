"""Cohorts: many slides, one task per slide, on a Dask distributed cluster (``napari-s2s batch``).

- :mod:`.inputs`: which slides the paths name (files, folders of slides, Space Ranger ``outs/``) and where
  each one's result goes;
- :mod:`.manifest`: ``manifest.csv``, one row per input, rewritten atomically as slides finish;
- :mod:`.cluster`: a local cluster or a connection to a running scheduler, with a clear error when
  ``distributed`` is missing or the scheduler does not answer, and resubmission of tasks whose worker died;
- :mod:`.runner`: the batch itself (skip what is done, submit the rest, collect rows as they finish).

Nothing here imports napari or Qt; ``distributed`` is imported only when a cluster is used. Import the
modules themselves (this package imports nothing, so that ``napari-s2s --help`` stays fast).
"""
