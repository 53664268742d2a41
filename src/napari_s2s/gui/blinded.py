"""The "Blinded reading" dock: a reader answers a review session, gene by gene, without knowing
which map is which.

The models are in :mod:`napari_s2s.core.review` (session, maps, the reader's answers file); this view
shows a gene's two maps side by side over the H&E in napari's grid mode (one contrast, layers named
"left" and "right"), takes the reader's choice by mouse or keys (1 or ← left, 2 or → right, 0 or ↓
can't tell; not while typing a comment), optional 1-5 plausibility scores and a comment, and saves
after every answer. Reopening the session with the same reader name continues where it stopped.
"""

from __future__ import annotations

import html
import time
from pathlib import Path

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import SlideError
from ..core.review.answers import SCORES, ReaderAnswers, reader_key
from ..core.review.maps import SessionMaps, load_maps
from ..core.review.session import ReviewSession
from . import side_by_side
from .gene_display import show_scale_bar
from .layers import META_KEY, embed_affine, napari_units

#: Keys of the dock: key -> choice (digits also on the keypad).
KEYS = {
    Qt.Key.Key_1: "left",
    Qt.Key.Key_Left: "left",
    Qt.Key.Key_2: "right",
    Qt.Key.Key_Right: "right",
    Qt.Key.Key_0: "cant_tell",
    Qt.Key.Key_Down: "cant_tell",
}
#: The same keys bound on the viewer while a reader reads (when the canvas has the focus).
VIEWER_KEYS = {"1": "left", "Left": "left", "2": "right", "Right": "right", "0": "cant_tell", "Down": "cant_tell"}
#: Metadata of the layers this view adds (no slide, no arm: the dock widget ignores them, readers learn nothing).
BLINDED_META = {META_KEY: {"kind": "blinded"}}


def _notify(kind: str, message: str) -> None:
    from napari.utils import notifications

    getattr(notifications, f"show_{kind}")(f"napari-s2s: {message}")


class ScoreRow(QWidget):
    """Five toggle buttons 1-5; clicking the checked one clears it (the score is optional)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        self.buttons = {}
        for s in SCORES:
            b = QPushButton(str(s))
            b.setCheckable(True)
            b.setFixedWidth(30)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys stay with the dock
            b.setToolTip(f"plausibility {s} (1 implausible, 5 fully plausible); click again to clear")
            b.clicked.connect(lambda checked, s=s: self.set_value(s if checked else None))
            lay.addWidget(b)
            self.buttons[s] = b
        lay.addStretch(1)

    def value(self) -> int | None:
        for s, b in self.buttons.items():
            if b.isChecked():
                return s
        return None

    def set_value(self, value: int | None) -> None:
        for s, b in self.buttons.items():
            b.setChecked(s == value)


class BlindedReader(QWidget):
    """Dock widget for blinded reading (npe2 ``widgets`` contribution "Blinded reading").

    Parameters
    ----------
    napari_viewer
        The viewer (injected by napari).
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.session: ReviewSession | None = None
        self.maps: SessionMaps | None = None
        self.answers: ReaderAnswers | None = None
        self.index: int | None = None  # position of the current gene in the reader's order
        self._layers: dict = {}
        self._grid_saved: dict | None = None
        self._keys = _ViewerKeys(napari_viewer)
        self._shown_at = 0.0
        self._view_reset = False
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._build_ui()
        self.destroyed.connect(self._keys.restore)  # a closed dock leaves the viewer's keys as they were
        QTimer.singleShot(0, self._beside_main_panel)  # once napari has docked it

    def _beside_main_panel(self) -> None:
        """Opened from the Plugins menu on a laptop screen: a tab beside the S2S-ST imputation panel
        (docked below it, each got a third of the height)."""
        from . import dock_layout
        from .widget import S2SWidget

        try:
            main = next(iter(self.window().findChildren(S2SWidget)), None)
        except RuntimeError:  # closed before the event loop ran
            return
        if main is not None:
            dock_layout.tabify_beside(main, dock_layout.host_dock(self))

    # ================================================================== UI
    def _build_ui(self) -> None:
        lay = QVBoxLayout(self)
        box = QGroupBox("Session")
        form = QVBoxLayout(box)
        row = QHBoxLayout()
        self.open_button = QPushButton("Open session…")
        self.open_button.setToolTip("a session file (.json) made with 'napari-s2s session create' or New session…")
        self.open_button.clicked.connect(self._open_dialog)
        row.addWidget(self.open_button)
        self.new_button = QPushButton("New session…")
        self.new_button.setToolTip("make a session: two result files, two methods, or a hold-out run")
        self.new_button.clicked.connect(self._new_dialog)
        row.addWidget(self.new_button)
        form.addLayout(row)
        self.session_label = QLabel("no session: open one")
        self.session_label.setWordWrap(True)
        form.addWidget(self.session_label)
        names = QFormLayout()
        self.reader_edit = QLineEdit()
        self.reader_edit.setPlaceholderText("your name (the same name continues later)")
        self.reader_edit.returnPressed.connect(self._start_clicked)
        names.addRow("Reader", self.reader_edit)
        form.addLayout(names)
        row = QHBoxLayout()
        self.start_button = QPushButton("Start reading")
        self.start_button.clicked.connect(self._start_clicked)
        self.start_button.setEnabled(False)
        row.addWidget(self.start_button, 2)
        self.unblind_button = QPushButton("Unblind…")
        self.unblind_button.setToolTip(
            "for the organiser, once readers are done: which map readers preferred, merged over every "
            "reader's file, and the HTML report (this names the methods)"
        )
        self.unblind_button.clicked.connect(self._unblind_clicked)
        self.unblind_button.setEnabled(False)
        row.addWidget(self.unblind_button, 1)
        form.addLayout(row)
        lay.addWidget(box)

        self.read_box = QGroupBox("Reading")
        rl = QVBoxLayout(self.read_box)
        self.gene_label = QLabel("")
        font = self.gene_label.font()
        font.setPointSize(font.pointSize() + 5)
        font.setBold(True)
        self.gene_label.setFont(font)
        rl.addWidget(self.gene_label)
        self.progress_label = QLabel("")
        rl.addWidget(self.progress_label)
        self.question_label = QLabel("")
        self.question_label.setWordWrap(True)
        rl.addWidget(self.question_label)
        row = QHBoxLayout()
        self.left_button = QPushButton("◀ Left  (1)")
        self.cant_button = QPushButton("Can't tell  (0)")
        self.right_button = QPushButton("Right ▶  (2)")
        for b, choice in ((self.left_button, "left"), (self.cant_button, "cant_tell"), (self.right_button, "right")):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.clicked.connect(lambda _=False, c=choice: self.choose(c))
            row.addWidget(b)
        self.left_button.setToolTip("the left map is more plausible (key 1 or ←)")
        self.right_button.setToolTip("the right map is more plausible (key 2 or →)")
        self.cant_button.setToolTip("no preference (key 0 or ↓)")
        rl.addLayout(row)
        scores = QFormLayout()
        self.score_left = ScoreRow()
        self.score_right = ScoreRow()
        scores.addRow("left 1-5", self.score_left)
        scores.addRow("right 1-5", self.score_right)
        rl.addLayout(scores)
        self.comment_edit = QLineEdit()
        self.comment_edit.setPlaceholderText("comment (optional; Enter, then 1 / 2 / 0)")
        self.comment_edit.returnPressed.connect(self.setFocus)
        rl.addWidget(self.comment_edit)
        row = QHBoxLayout()
        self.back_button = QPushButton("◀ Back")
        self.back_button.setToolTip("the previous gene (its answer can be changed)")
        self.back_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.back_button.clicked.connect(self.back)
        row.addWidget(self.back_button)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setToolTip("stop for now: answers are saved; reopen the session with the same name to go on")
        self.pause_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.pause_button.clicked.connect(self.pause)
        row.addWidget(self.pause_button)
        rl.addLayout(row)
        self.read_box.setVisible(False)
        lay.addWidget(self.read_box)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        lay.addWidget(self.status_label)
        lay.addStretch(1)

    # ================================================================== session
    def open_session(self, path: str | Path) -> bool:
        """Open a session file and load its maps; errors are one line (notification and label)."""
        self.pause()
        try:
            session = ReviewSession.load(path)
            maps = load_maps(session)
        except (SlideError, OSError) as exc:
            self._error(str(exc).splitlines()[0])
            return False
        self.session, self.maps = session, maps
        title = f"<b>{html.escape(session.title)}</b><br>" if session.title else ""
        self.session_label.setText(
            f"{title}{html.escape(Path(session.path).name)}: {len(session.genes)} genes of "
            f"{html.escape(maps.slide.name)}; two maps per gene, names hidden."
        )
        self.start_button.setEnabled(True)
        self.unblind_button.setEnabled(True)
        self.status_label.setText("enter your name, then Start reading")
        return True

    def unblind(self):
        """The merged, unblinded statistics of every reader of the open session, as a dialog (not shown)."""
        from ..core.review.answers import load_readers
        from .unblind_dialog import UnblindDialog

        if self.session is None or self.reading:
            return None
        try:
            readers = load_readers(self.session)
        except (SlideError, OSError) as exc:
            self._error(str(exc).splitlines()[0])
            return None
        return UnblindDialog(self.session, readers, self.maps, self)

    def _unblind_clicked(self) -> None:
        dlg = self.unblind()
        if dlg is not None:
            dlg.exec()

    def _open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a review session", "", "Review session (*.json)")
        if path:
            self.open_session(path)

    def _new_dialog(self) -> None:
        from .session_dialog import NewSessionDialog

        dlg = NewSessionDialog(self.viewer, self)
        if dlg.exec() and dlg.created is not None:
            self.open_session(dlg.created)

    def _start_clicked(self) -> None:
        self.start(self.reader_edit.text())

    def start(self, reader: str) -> bool:
        """Start (or resume) reading the open session as ``reader``."""
        if self.session is None:
            self._error("open a session first")
            return False
        try:
            reader_key(reader)
            self.answers = ReaderAnswers.open(self.session, reader)
        except ValueError as exc:  # SessionError included (an answers file of another session)
            self._error(str(exc).splitlines()[0])
            return False
        except OSError as exc:
            self._error(f"cannot write the answers: {exc}")
            return False
        self.reader_edit.setText(self.answers.reader)
        if self.answers.done:
            self.status_label.setText(
                f"{self.answers.reader}: all {len(self.answers.order)} genes answered already ({self.answers.path}); "
                "Back changes answers"
            )
            self.index = len(self.answers.order) - 1
        else:
            self.index = self.answers.next_index()
            resumed = self.answers.n_answered
            self.status_label.setText(
                (f"resumed: {resumed} answered before; " if resumed else "")
                + f"answers are saved after each gene to {self.answers.path}"
            )
        self._show_layers()
        self._bind_viewer_keys()
        self.read_box.setVisible(True)
        self.start_button.setEnabled(False)
        self.unblind_button.setEnabled(False)
        self.reader_edit.setEnabled(False)
        self._show_gene()
        self.setFocus()
        return True

    # ================================================================== reading
    @property
    def reading(self) -> bool:
        return self.answers is not None and self.index is not None and bool(self._layers)

    @property
    def current_gene(self) -> str | None:
        if self.answers is None or self.index is None:
            return None
        return self.answers.order[self.index][0]

    def progress_text(self) -> str:
        """``"answered / total"``, e.g. ``"12 / 30"``."""
        if self.answers is None:
            return ""
        return f"{self.answers.n_answered} / {len(self.answers.order)}"

    def choose(self, choice: str) -> None:
        """Answer the current gene (``"left"``, ``"right"``, ``"cant_tell"``) and move to the next one."""
        if not self.reading:
            return
        gene = self.current_gene
        try:
            self.answers.answer(
                gene,
                choice,
                score_left=self.score_left.value(),
                score_right=self.score_right.value(),
                comment=self.comment_edit.text(),
                seconds=time.perf_counter() - self._shown_at,
            )
        except OSError as exc:
            self._error(f"answer not saved: {exc}")
            return
        nxt = self._next_unanswered()
        if nxt is None:
            self.finish()
            return
        self.index = nxt
        self._show_gene()
        self.setFocus()

    def _next_unanswered(self) -> int | None:
        n = len(self.answers.order)
        for k in range(1, n + 1):
            i = (self.index + k) % n
            if self.answers.order[i][0] not in self.answers.answers:
                return i
        return None

    def back(self) -> None:
        """Show the previous gene of the reader's order again (its answer can be changed)."""
        if self.reading and self.index > 0:
            self.index -= 1
            self._show_gene()
            self.setFocus()

    def pause(self) -> None:
        """Stop reading: answers are on disk; the viewer gets its layers back."""
        self._unbind_viewer_keys()
        self._remove_layers()
        was = self.answers
        self.index = None
        self.answers = None
        self.read_box.setVisible(False)
        self.reader_edit.setEnabled(True)
        self.start_button.setEnabled(self.session is not None)
        self.unblind_button.setEnabled(self.session is not None)
        if was is not None and not was.done:
            self.status_label.setText(
                f"paused at {was.n_answered} / {len(was.order)}; answers saved to {was.path}. "
                "Start reading with the same name to continue."
            )

    def finish(self) -> None:
        """All genes answered: thank the reader and give the viewer back."""
        done = self.answers
        self.pause()
        self.status_label.setText(
            f"done: {len(done.order)} / {len(done.order)} genes answered by {done.reader}, saved to {done.path}. "
            "Thank you!"
        )
        self.progress_label.setText(f"{len(done.order)} / {len(done.order)}")

    def keyPressEvent(self, event) -> None:  # noqa: N802 (Qt name)
        """1 / ← left, 2 / → right, 0 / ↓ can't tell (no modifier; the comment field keeps its keys)."""
        if self._handles(event):
            self.choose(KEYS[event.key()])
            event.accept()
            return
        super().keyPressEvent(event)

    def _handles(self, event) -> bool:
        from qtpy.QtWidgets import QAbstractSpinBox, QApplication

        if not self.reading or event.key() not in KEYS:
            return False
        if event.modifiers() not in (Qt.KeyboardModifier.NoModifier, Qt.KeyboardModifier.KeypadModifier):
            return False
        focus = QApplication.focusWidget()
        return not isinstance(focus, (QLineEdit, QAbstractSpinBox))

    # ================================================================== layers
    def _show_layers(self) -> None:
        """Add the H&E and the "left" / "right" layers, side by side in napari's grid."""
        self._remove_layers()
        v = self.viewer
        units = (napari_units(self.maps.units),) * 2
        he = self.maps.he()
        he_layer = None
        if he is not None:  # the part of the H&E around the maps: the view opens on the tissue
            crop, origin = he_crop(self.maps, he[0], he[1])
            he_layer = v.add_image(
                crop,
                rgb=True,
                scale=(he[1], he[1]),
                translate=origin,
                units=units,
                name="H&E",
                metadata=dict(BLINDED_META),
            )
        for side in ("left", "right"):
            self._layers[side] = v.add_image(
                self.maps.image(0, self.maps.session.genes[0])[0],
                name=side,
                colormap="viridis",
                interpolation2d="nearest",
                opacity=0.85,
                blending="translucent",
                units=units,
                metadata=dict(BLINDED_META),
            )
        if he_layer is not None:
            self._layers["he"] = he_layer
        self._grid_saved = side_by_side.enter(v, self._layers["left"], self._layers["right"], he_layer)
        if units[0] == "um":  # readers judge sizes: a micrometre bar on each side
            show_scale_bar(v)

    def _show_gene(self) -> None:
        gene, left = self.answers.order[self.index]
        limits = self.maps.limits(gene)
        for side, arm in (("left", left), ("right", 1 - left)):
            layer = self._layers[side]
            data, affine = self.maps.image(arm, gene)
            layer.data = data
            layer.affine = embed_affine(affine, 2)
            layer.contrast_limits_range = limits
            layer.contrast_limits = limits
        if not self._view_reset:
            self.viewer.reset_view()
            # napari sizes the grid's cells at the next paint: fit the view again once they have a size
            QTimer.singleShot(0, self._fit_view)
            self._view_reset = True
        prior = self.answers.answers.get(gene)
        self.score_left.set_value(prior.score_left if prior else None)
        self.score_right.set_value(prior.score_right if prior else None)
        self.comment_edit.setText(prior.comment if prior else "")
        self.gene_label.setText(gene)
        where = f"gene {self.index + 1} of {len(self.answers.order)}"
        again = f"; answered before: {_choice_words(prior.choice)}" if prior else ""
        self.progress_label.setText(f"{self.progress_text()} answered ({where}{again})")
        self.question_label.setText(self.session.question)
        self.back_button.setEnabled(self.index > 0)
        self._shown_at = time.perf_counter()

    def _fit_view(self) -> None:
        if self._layers:
            self.viewer.reset_view()

    def _remove_layers(self) -> None:
        if self._layers:
            side_by_side.leave(self.viewer, self._grid_saved)
        for layer in list(self._layers.values()):
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self._layers = {}
        self._grid_saved = None
        self._view_reset = False

    # ================================================================== viewer keys
    def _bind_viewer_keys(self) -> None:
        """While reading, the answer keys also work with the canvas focused (the viewer's own
        bindings of these keys come back on pause)."""
        actions = {key: (lambda c=choice: self.choose(c)) for key, choice in VIEWER_KEYS.items()}
        self._keys.bind(actions, list(self._layers.values()))

    def _unbind_viewer_keys(self) -> None:
        self._keys.restore()

    def _error(self, message: str) -> None:
        self.status_label.setText(f"<span style='color:#e06c75'>{html.escape(message)}</span>")
        _notify("error", message)


def he_crop(maps: SessionMaps, image, scale: float, margin: float = 0.08):
    """The H&E around a session's maps (both arms, first gene) plus ``margin`` of their size, padded
    with white where the maps reach past the image's edge (napari's grid sizes its cells on the
    H&E): ``(image, world (y, x) of its first pixel)``."""
    import numpy as np

    from ..core.review.render import world_bounds

    gene = maps.session.genes[0]
    boxes = [b for b in (world_bounds(*maps.image(k, gene)) for k in range(2)) if b is not None]
    if not boxes:
        return image, (0.0, 0.0)
    y0, y1 = min(b[0] for b in boxes), max(b[1] for b in boxes)
    x0, x1 = min(b[2] for b in boxes), max(b[3] for b in boxes)
    pad = margin * max(y1 - y0, x1 - x0)
    r0, r1 = int(np.floor((y0 - pad) / scale)), int(np.ceil((y1 + pad) / scale)) + 1
    c0, c1 = int(np.floor((x0 - pad) / scale)), int(np.ceil((x1 + pad) / scale)) + 1
    h, w = image.shape[:2]
    out = np.full((r1 - r0, c1 - c0, image.shape[2]), 255, dtype=image.dtype)
    sr0, sr1, sc0, sc1 = max(0, r0), min(h, r1), max(0, c0), min(w, c1)
    if sr1 > sr0 and sc1 > sc0:
        out[sr0 - r0 : sr1 - r0, sc0 - c0 : sc1 - c0] = image[sr0:sr1, sc0:sc1]
    return out, (r0 * scale, c0 * scale)


class _ViewerKeys:
    """Key bindings lent by the viewer while a reader reads (plain Python: it outlives the widget)."""

    def __init__(self, viewer):
        self.viewer = viewer
        self.previous: dict = {}

    def bind(self, actions: dict, layers=()) -> None:
        """Bind ``{key: action}`` on the viewer and on ``layers`` (the active layer's keymap comes first:
        an image layer takes the digits for its modes)."""
        self.restore()
        for key, action in actions.items():
            self.previous[key] = self.viewer.bind_key(key, lambda _viewer, a=action: a(), overwrite=True)
            for layer in layers:
                layer.bind_key(key, lambda _layer, a=action: a(), overwrite=True)

    def restore(self, *_) -> None:
        for key, previous in self.previous.items():
            try:
                self.viewer.bind_key(key, previous, overwrite=True)
            except (RuntimeError, ValueError, TypeError):  # the viewer is closing
                pass
        self.previous = {}


def _choice_words(choice: str) -> str:
    return {"left": "left", "right": "right", "cant_tell": "can't tell"}[choice]
