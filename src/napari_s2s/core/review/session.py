"""A blinded review session: what two maps readers compare, gene by gene, as a JSON file.

A session names the slide (for the H&E and the measured values), the two *arms* whose maps are
compared and the genes; readers never see the arms' names. An arm is

- ``"result"``: a napari-s2s result ``.h5ad`` on the x2 dense grid (``napari-s2s impute``, the dock's
  Save, or maps computed with any method when the session is made), or
- ``"measured"``: the slide's own measured values (on a hold-out session: the values the method did
  not see), or
- ``"holdout"``: a method's hold-out prediction on the slide's grid (measured at the 1/4 sub-lattice it
  was given, predicted at the 3/4 hidden spots), stored in an ``.h5ad`` beside the session.

Files are stored relative to the session's folder (and absolutely, as a fallback) with their
SHA-256, so that a file that moved or changed since the session was made is a clear error naming it.
Per-reader answers live in :mod:`.answers`; merging them in :mod:`.stats`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..errors import SessionError
from .files import read_json, resolve_stored, sha256, stored_path, write_json

#: ``"format"`` tag of session files.
FORMAT = "napari-s2s-review-session"
#: Version of the session format this code writes and reads.
VERSION = 1
#: Kinds of arms.
ARM_KINDS = ("result", "measured", "holdout")
#: The question readers answer, unless the session sets another.
DEFAULT_QUESTION = "Which map is the more plausible expression pattern for this gene, given the H&E?"


@dataclass
class Arm:
    """One of the two things compared.

    Attributes
    ----------
    name
        Label shown once unblinded (``"s2s"``, ``"gaussian"``, ``"measured"``...); unique per session.
    kind
        ``"result"``, ``"measured"`` or ``"holdout"`` (see the module docstring).
    file
        The :func:`~.files.stored_path` entry of its file plus ``"sha256"`` (``None`` for ``"measured"``).
    method
        The imputation method, when known.
    """

    name: str
    kind: str
    file: dict | None = None
    method: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "method": self.method, "file": self.file}


@dataclass
class ReviewSession:
    """A review session (see the module docstring); :meth:`save` / :meth:`load` as JSON.

    Attributes
    ----------
    slide
        :func:`~.files.stored_path` entry of the slide.
    arms
        The two arms compared.
    genes
        Genes, in the session's order.
    seed
        Seed of every reader's random order (with the reader's name).
    kind
        ``"compare"`` (two imputations) or ``"holdout"`` (a hold-out validation run).
    holdout
        For hold-out sessions: ``{"methods", "measured", "hidden", "metrics": {arm: {gene: {...}}}}``.
    path
        Where the session was loaded from or saved to (not stored in the file).
    """

    slide: dict
    arms: list[Arm]
    genes: list[str]
    seed: int = 0
    kind: str = "compare"
    title: str = ""
    question: str = DEFAULT_QUESTION
    holdout: dict | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: str = field(default_factory=lambda: now())
    version: str = ""
    path: Path | None = None

    # ------------------------------------------------------------------ facts
    @property
    def arm_names(self) -> list[str]:
        return [a.name for a in self.arms]

    @property
    def folder(self) -> Path:
        """The session file's folder (relative paths are resolved from it)."""
        return (self.path.parent if self.path is not None else Path.cwd()).resolve()

    @property
    def answers_dir(self) -> Path:
        """Default folder of the readers' answer files: ``<session stem>_answers`` beside it."""
        stem = self.path.stem if self.path is not None else "session"
        return self.folder / f"{stem}_answers"

    @property
    def maps_dir(self) -> Path:
        """Folder of the maps computed when the session was made: ``<session stem>_maps``."""
        stem = self.path.stem if self.path is not None else "session"
        return self.folder / f"{stem}_maps"

    def describe(self) -> str:
        """One line for humans (names the arms: not for readers' eyes)."""
        what = f"{len(self.genes)} genes, {' vs '.join(self.arm_names)}"
        return f"{self.title}: {what}" if self.title else what

    # ------------------------------------------------------------------ files
    def slide_path(self) -> Path:
        """The slide's path, checked.

        Raises
        ------
        SessionError
            The slide is not where the session says (naming the session and the slide).
        """
        p = resolve_stored(self.slide, self.folder)
        if p is None:
            raise SessionError(self.path, f"slide not found: {self._where(self.slide)} (moved or deleted?)")
        return p

    def arm_path(self, arm: Arm, check_hash: bool = True) -> Path:
        """The file of a ``"result"`` / ``"holdout"`` arm, checked to exist and be unchanged.

        Raises
        ------
        SessionError
            Naming the session and the file: not found, or changed since the session was made.
        """
        if arm.file is None:
            raise SessionError(self.path, f"arm {arm.name!r} ({arm.kind}) has no file")
        p = resolve_stored(arm.file, self.folder)
        if p is None:
            raise SessionError(
                self.path, f"result file of arm {arm.name!r} not found: {self._where(arm.file)} (moved or deleted?)"
            )
        if check_hash and arm.file.get("sha256") and sha256(p) != arm.file["sha256"]:
            raise SessionError(
                self.path, f"result file {p} of arm {arm.name!r} changed since the session was made (SHA-256 differs)"
            )
        return p

    def _where(self, entry: dict) -> str:
        rel = entry.get("path") or ""
        shown = str(self.folder / rel) if rel and not Path(rel).is_absolute() else rel
        if entry.get("abs") and entry["abs"] != shown:
            shown += f" or {entry['abs']}"
        return shown

    def check_files(self) -> None:
        """Check that the slide and every arm's file are where the session says, unchanged."""
        self.slide_path()
        for arm in self.arms:
            if arm.kind != "measured":
                self.arm_path(arm)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        from ... import __version__

        return {
            "format": FORMAT,
            "version": VERSION,
            "id": self.id,
            "created": self.created,
            "napari_s2s": self.version or __version__,
            "title": self.title,
            "kind": self.kind,
            "question": self.question,
            "slide": self.slide,
            "arms": [a.to_dict() for a in self.arms],
            "genes": list(self.genes),
            "seed": int(self.seed),
            "holdout": self.holdout,
        }

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the session as JSON (atomically).

        An existing session file is not replaced unless ``overwrite``: readers' answers refer to
        its id, a new session would orphan them.
        """
        path = Path(path).expanduser()
        if path.is_dir():
            raise SessionError(path, "is a folder; give a session file name such as review.json")
        if not path.parent.exists():
            raise SessionError(path, f"folder {path.parent} does not exist")
        if path.exists() and not overwrite:
            raise SessionError(path, "exists already; refusing to replace a session (readers' answers refer to it)")
        self.path = path
        write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | Path) -> ReviewSession:
        """Read and validate a session file.

        Raises
        ------
        SessionError
            One line naming the file: not a session, a newer format, or a malformed field.
        """
        path = Path(path).expanduser()
        rec = read_json(path, "napari-s2s review session", FORMAT)
        version = rec.get("version")
        if not isinstance(version, int) or version < 1:
            raise SessionError(path, f"session 'version' must be a positive integer, not {version!r}")
        if version > VERSION:
            raise SessionError(
                path, f"session format version {version} is newer than this napari-s2s reads ({VERSION})"
            )

        def need(key, ok, what):
            value = rec.get(key)
            if not ok(value):
                raise SessionError(path, f"session field {key!r} must be {what}, not {_short(value)}")
            return value

        sid = need("id", lambda v: isinstance(v, str) and v.strip(), "a non-empty string")
        genes = need(
            "genes",
            lambda v: isinstance(v, list) and v and all(isinstance(g, str) and g for g in v) and len(set(v)) == len(v),
            "a non-empty list of distinct gene names",
        )
        slide = need("slide", lambda v: isinstance(v, dict) and (v.get("path") or v.get("abs")), "a path entry")
        raw_arms = need("arms", lambda v: isinstance(v, list) and len(v) == 2, "a list of two arms")
        arms = []
        for k, a in enumerate(raw_arms):
            if not isinstance(a, dict) or not isinstance(a.get("name"), str) or not a["name"]:
                raise SessionError(path, f"arm {k + 1} has no name")
            if a.get("kind") not in ARM_KINDS:
                raise SessionError(path, f"arm {a['name']!r} has kind {a.get('kind')!r}, expected one of {ARM_KINDS}")
            f = a.get("file")
            if a["kind"] != "measured" and not (isinstance(f, dict) and (f.get("path") or f.get("abs"))):
                raise SessionError(path, f"arm {a['name']!r} ({a['kind']}) names no file")
            arms.append(
                Arm(name=a["name"], kind=a["kind"], file=f if a["kind"] != "measured" else None, method=a.get("method"))
            )
        if arms[0].name == arms[1].name:
            raise SessionError(path, f"both arms are named {arms[0].name!r}")
        seed = need("seed", lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")
        kind = need("kind", lambda v: v in ("compare", "holdout"), "'compare' or 'holdout'")
        holdout = rec.get("holdout")
        if holdout is not None and not isinstance(holdout, dict):
            raise SessionError(path, "session field 'holdout' must be an object or null")
        return cls(
            slide=slide,
            arms=arms,
            genes=list(genes),
            seed=seed,
            kind=kind,
            title=str(rec.get("title") or ""),
            question=str(rec.get("question") or DEFAULT_QUESTION),
            holdout=holdout,
            id=sid,
            created=str(rec.get("created") or ""),
            version=str(rec.get("napari_s2s") or ""),
            path=path,
        )


def arm_file(path: str | Path, base: Path) -> dict:
    """The ``file`` entry of an arm: :func:`~.files.stored_path` plus the file's SHA-256."""
    entry = stored_path(path, base)
    entry["sha256"] = sha256(path)
    return entry


def now() -> str:
    """UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
