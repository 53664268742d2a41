"""The slides a batch's paths name, and the output file of each.

A path is a slide (an ``.h5ad`` file, a Space Ranger ``outs/`` folder or its parent, a Visium HD or
Xenium folder, a SpatialData store) or a folder of slides: every slide inside, at any depth (a slide's
folder counts once, as one slide). Hidden entries and the batch's own output folder are left out.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..data.io import is_slide_path

#: Suffix of result files: ``DIR/<slide name>_s2s.h5ad``.
OUTPUT_SUFFIX = "_s2s.h5ad"


def slide_name(path: str | Path) -> str:
    """A slide's short name from its path, as :attr:`Slide.name` has it (file stem; the folder above ``outs/``)."""
    p = Path(os.path.abspath(path))
    stem = p.name if p.is_dir() or not p.suffix else p.stem
    if stem in ("outs", ""):
        stem = p.parent.name
    return stem


def output_path(out_dir: str | Path, path: str | Path) -> Path:
    """``out_dir/<slide name>_s2s.h5ad``."""
    return Path(out_dir) / f"{slide_name(path)}{OUTPUT_SUFFIX}"


#: What a slide path is, for messages.
SLIDE_KINDS = ".h5ad files, Space Ranger, Visium HD or Xenium folders, SpatialData .zarr stores"


def find_slides(paths, exclude: str | Path | None = None) -> tuple[list[Path], list[tuple[str, str]]]:
    """The slides named by ``paths`` (absolute, in order, each once) and the paths that name none.

    Parameters
    ----------
    paths
        Files or folders.
    exclude
        A folder to leave out of folder scans (the batch's output folder).

    Returns
    -------
    slides
        Absolute slide paths (symbolic links kept): ``.h5ad`` files and Space Ranger folders (not checked further: a corrupt
        file is found here and fails when read).
    problems
        ``(path, reason)`` for given paths that are missing, or files and folders holding no slide.
    """
    skip = Path(exclude).resolve() if exclude is not None else None
    slides: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()  # one entry per file, however it is reached (symbolic links, ..)
        if key not in seen:
            seen.add(key)
            slides.append(Path(os.path.abspath(p)))

    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            problems.append((str(raw), "no such file or folder"))
        elif is_slide_path(p):
            add(_canonical(p))
        elif p.is_dir():
            found = _scan(p, skip)
            if not found:
                here = p.resolve()
                if skip is not None and (skip == here or here in skip.parents or skip in here.parents):
                    why = "no slide in this folder outside --out-dir (results are not inputs; give another --out-dir)"
                else:
                    why = f"no slide in this folder ({SLIDE_KINDS})"
                problems.append((str(raw), why))
            for f in found:
                add(f)
        else:
            problems.append((str(raw), f"not a slide (expected {SLIDE_KINDS})"))
    return slides, problems


def _scan(folder: Path, skip: Path | None) -> list[Path]:
    """Slides inside ``folder``, sorted by path, not descending into Space Ranger folders or ``skip``."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        here = Path(root)
        if skip is not None and here.resolve() == skip:
            dirs[:] = []
            continue
        keep = []
        for d in sorted(dirs):
            sub = here / d
            if d.startswith("."):
                continue
            if is_slide_path(sub):  # a slide stored as a folder (Space Ranger): one slide, not scanned further
                found.append(_canonical(sub))
            else:
                keep.append(d)
        dirs[:] = keep
        found += [here / f for f in sorted(files) if not f.startswith(".") and is_slide_path(here / f)]
    return sorted(set(found))


def _canonical(p: Path) -> Path:
    """One path per slide: a Space Ranger run folder and its ``outs/`` are the same slide."""
    if p.is_dir() and p.name != "outs" and is_slide_path(p / "outs"):
        return p / "outs"
    return p
