"""One reader's answers to a blinded session, saved to their own file after every answer.

Each reader gets the session's genes in a random order, and for each gene a random left/right
placement of the two arms, drawn from the session's seed and the reader's name and recorded in the
file, so that reopening the session with the same name continues where the reader stopped, with
the same placements. The file stores which arm was on the left (its index), never the arm's name.

Every :meth:`ReaderAnswers.answer` rewrites the file atomically (temporary file + ``os.replace``):
a crash or a closed window loses at most the gene being looked at.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SessionError
from .files import read_json, write_json
from .session import ReviewSession, now

#: ``"format"`` tag of answer files.
FORMAT = "napari-s2s-review-answers"
#: Version of the answers format.
VERSION = 1
#: What a reader can answer: the left map, the right map, or "can't tell".
CHOICES = ("left", "right", "cant_tell")
#: Plausibility scores (optional, one per map).
SCORES = (1, 2, 3, 4, 5)


def reader_key(name: str) -> str:
    """File-name-safe identity of a reader: ``"Dr. Ana Souza"`` -> ``"dr-ana-souza"``.

    Raises
    ------
    ValueError
        A name without a letter or digit.
    """
    key = re.sub(r"[^0-9a-z]+", "-", name.strip().lower()).strip("-")
    if not key:
        raise ValueError(f"reader name {name!r} has no letter or digit")
    return key


def reader_file(session: ReviewSession, reader: str, folder: str | Path | None = None) -> Path:
    """Where ``reader``'s answers to ``session`` are kept (default: the session's answers folder)."""
    return Path(folder or session.answers_dir) / f"{reader_key(reader)}.json"


@dataclass
class Answer:
    """A reader's answer for one gene.

    ``left`` is the index of the arm that was shown on the left; ``score_left`` / ``score_right``
    the optional 1-5 plausibility of each map; ``seconds`` the time spent on the gene.
    """

    gene: str
    choice: str
    left: int
    score_left: int | None = None
    score_right: int | None = None
    comment: str = ""
    at: str = ""
    seconds: float | None = None

    @property
    def preferred(self) -> int | None:
        """Index of the arm preferred (unblinded), ``None`` for "can't tell"."""
        if self.choice == "cant_tell":
            return None
        return self.left if self.choice == "left" else 1 - self.left

    def score_of(self, arm: int) -> int | None:
        """The score given to arm ``arm`` (0 or 1), or ``None``."""
        return self.score_left if arm == self.left else self.score_right

    def to_dict(self) -> dict:
        return {
            "choice": self.choice,
            "left": self.left,
            "score_left": self.score_left,
            "score_right": self.score_right,
            "comment": self.comment,
            "at": self.at,
            "seconds": self.seconds,
        }


@dataclass
class ReaderAnswers:
    """A reader's placements and answers for one session, bound to its file.

    Use :meth:`open` (start or resume); :meth:`answer` records and saves.
    """

    session_id: str
    reader: str
    order: list[tuple[str, int]]  # (gene, index of the arm shown on the left), in reading order
    answers: dict[str, Answer] = field(default_factory=dict)
    path: Path | None = None
    started: str = field(default_factory=now)
    updated: str = ""
    session_title: str = ""

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, session: ReviewSession, reader: str, folder: str | Path | None = None) -> ReaderAnswers:
        """Resume ``reader``'s answers to ``session`` when their file exists, else start them.

        A new reader's order is drawn from the session's seed and the reader's name, and saved at
        once (so the placements are fixed before the first map is shown).

        Raises
        ------
        SessionError
            The reader's file exists but is not an answers file, or belongs to another session
            (nothing is overwritten).
        ValueError
            A reader name without a letter or digit.
        """
        path = reader_file(session, reader, folder)
        if path.exists():
            return cls.load(path, session)
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(order_seed(session, reader))
        genes = [session.genes[i] for i in rng.permutation(len(session.genes))]
        lefts = rng.integers(0, 2, size=len(genes))
        out = cls(
            session_id=session.id,
            reader=reader.strip(),
            order=[(g, int(a)) for g, a in zip(genes, lefts)],
            path=path,
            session_title=session.title or (session.path.name if session.path else ""),
        )
        out.save()
        return out

    @classmethod
    def load(cls, path: str | Path, session: ReviewSession | None = None) -> ReaderAnswers:
        """Read an answers file; with ``session``, check that it belongs to it.

        Raises
        ------
        SessionError
            One line naming the file: not an answers file, malformed, or of another session.
        """
        path = Path(path)
        rec = read_json(path, "napari-s2s reader answers file", FORMAT)
        if not isinstance(rec.get("version"), int) or rec["version"] > VERSION:
            raise SessionError(path, f"answers format version {rec.get('version')!r} is not one this napari-s2s reads")
        sid, reader, order = rec.get("session_id"), rec.get("reader"), rec.get("order")
        if not isinstance(sid, str) or not isinstance(reader, str) or not reader.strip():
            raise SessionError(path, "answers file without a session id or a reader name")
        if session is not None and sid != session.id:
            theirs = f" ({rec['session']})" if rec.get("session") else ""
            raise SessionError(
                path,
                f"answers of another session{theirs} (id {sid[:8]}), not of {session.path.name if session.path else 'this one'}"
                f" (id {session.id[:8]})",
            )
        if not isinstance(order, list) or not all(
            isinstance(o, dict) and isinstance(o.get("gene"), str) and o.get("left") in (0, 1) for o in order
        ):
            raise SessionError(path, "answers file with a malformed 'order' (expected [{gene, left: 0|1}, ...])")
        pairs = [(o["gene"], int(o["left"])) for o in order]
        if session is not None and sorted(g for g, _ in pairs) != sorted(session.genes):
            raise SessionError(path, "its genes are not the session's genes")
        lefts = dict(pairs)
        answers = {}
        for gene, a in (rec.get("answers") or {}).items():
            if gene not in lefts or not isinstance(a, dict) or a.get("choice") not in CHOICES:
                raise SessionError(path, f"malformed answer for gene {gene!r}")
            if a.get("left") != lefts[gene]:
                raise SessionError(path, f"answer for gene {gene!r} does not match the recorded left/right placement")
            for key in ("score_left", "score_right"):
                if a.get(key) is not None and a.get(key) not in SCORES:
                    raise SessionError(path, f"answer for gene {gene!r}: {key} must be 1-5, not {a.get(key)!r}")
            answers[gene] = Answer(
                gene=gene,
                choice=a["choice"],
                left=lefts[gene],
                score_left=a.get("score_left"),
                score_right=a.get("score_right"),
                comment=str(a.get("comment") or ""),
                at=str(a.get("at") or ""),
                seconds=a.get("seconds"),
            )
        return cls(
            session_id=sid,
            reader=reader.strip(),
            order=pairs,
            answers=answers,
            path=path,
            started=str(rec.get("started") or ""),
            updated=str(rec.get("updated") or ""),
            session_title=str(rec.get("session") or ""),
        )

    # ------------------------------------------------------------------ reading
    @property
    def genes(self) -> list[str]:
        """Genes in this reader's order."""
        return [g for g, _ in self.order]

    def left_arm(self, gene: str) -> int:
        """Index of the arm shown on the left for ``gene``."""
        return dict(self.order)[gene]

    @property
    def n_answered(self) -> int:
        return len(self.answers)

    @property
    def done(self) -> bool:
        return len(self.answers) == len(self.order)

    def next_index(self) -> int | None:
        """Position (in this reader's order) of the first gene without an answer, ``None`` when done."""
        for i, (g, _) in enumerate(self.order):
            if g not in self.answers:
                return i
        return None

    # ------------------------------------------------------------------ writing
    def answer(
        self,
        gene: str,
        choice: str,
        score_left: int | None = None,
        score_right: int | None = None,
        comment: str = "",
        seconds: float | None = None,
    ) -> Answer:
        """Record (or replace) the answer for ``gene`` and save the file at once (atomically)."""
        if choice not in CHOICES:
            raise ValueError(f"choice must be one of {CHOICES}, not {choice!r}")
        for s in (score_left, score_right):
            if s is not None and s not in SCORES:
                raise ValueError(f"scores are 1-5, not {s!r}")
        a = Answer(
            gene=gene,
            choice=choice,
            left=self.left_arm(gene),
            score_left=score_left,
            score_right=score_right,
            comment=" ".join(str(comment or "").split()),
            at=now(),
            seconds=None if seconds is None else round(float(seconds), 2),
        )
        self.answers[gene] = a
        self.save()
        return a

    def to_dict(self) -> dict:
        self.updated = now()
        return {
            "format": FORMAT,
            "version": VERSION,
            "session_id": self.session_id,
            "session": self.session_title,
            "reader": self.reader,
            "started": self.started,
            "updated": self.updated,
            "order": [{"gene": g, "left": a} for g, a in self.order],
            "answers": {g: self.answers[g].to_dict() for g, _ in self.order if g in self.answers},
        }

    def save(self) -> Path:
        """Write the file atomically (see the module docstring)."""
        if self.path is None:
            raise ValueError("these answers have no file")
        return write_json(self.path, self.to_dict())


def order_seed(session: ReviewSession, reader: str) -> list[int]:
    """Seed of a reader's order: the session's seed and id and the reader's name (stable across runs)."""
    digest = hashlib.sha256(f"{session.id}:{reader_key(reader)}".encode()).digest()
    return [int(session.seed), int.from_bytes(digest[:8], "little")]


def load_readers(session: ReviewSession, paths=None) -> list[ReaderAnswers]:
    """Answers of several readers of ``session``: the given files, or every ``*.json`` of its answers folder.

    Raises
    ------
    SessionError
        A file of another session, not an answers file, or two files of the same reader.
    """
    if paths is None:
        folder = session.answers_dir
        paths = sorted(folder.glob("*.json")) if folder.is_dir() else []
    out: list[ReaderAnswers] = []
    seen: dict[str, Path] = {}
    for p in paths:
        r = ReaderAnswers.load(p, session)
        key = reader_key(r.reader)
        if key in seen:
            raise SessionError(p, f"a second answers file of reader {r.reader!r} (the first is {seen[key]})")
        seen[key] = Path(p)
        out.append(r)
    return out
