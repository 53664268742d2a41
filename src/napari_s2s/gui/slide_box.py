"""The dock's "Slide" box: which opened slide the widget works on, the Open… menu, a one-line summary."""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from .open_menu import build_open_menu


class SlideBox(QGroupBox):
    """Slide selector, "Open…" menu and a summary line.

    Parameters
    ----------
    open_path
        Called with the path the user picked in the Open… menu and the reader options its dialog
        asked for (``bin_um`` for a Xenium folder or a SpatialData store).
    start_dir
        Returns the folder the Open… dialogs start in.
    """

    #: The chosen slide changed (by the user or by :meth:`set_slides`).
    changed = Signal()

    def __init__(self, open_path: Callable[..., None], start_dir: Callable[[], str], parent=None):
        super().__init__("Slide", parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 4, 6, 4)
        row = QHBoxLayout()
        self.combo = QComboBox()
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(8)
        self.combo.setToolTip("slides opened in the viewer (File > Open, drag and drop, or Open…)")
        self.combo.currentIndexChanged.connect(lambda *_: self.changed.emit())
        self.open_button = QPushButton("Open…")
        self.open_button.setToolTip(
            "open an .h5ad file, a Space Ranger or Visium HD outs/ folder, a Xenium folder or a SpatialData .zarr"
        )
        self.open_button.setMenu(build_open_menu(self.open_button, open_path, start_dir))
        row.addWidget(self.combo, 1)
        row.addWidget(self.open_button)
        lay.addLayout(row)
        self.info = QLabel("no slide: open one")
        self.info.setWordWrap(True)
        lay.addWidget(self.info)

    def current_key(self):
        """Key of the chosen slide (see :meth:`set_slides`), or ``None``."""
        return self.combo.currentData()

    def set_slides(self, names: dict, select) -> None:
        """List the slides ``{key: name}`` and choose ``select``; emits :attr:`changed` once."""
        self.combo.blockSignals(True)
        try:
            self.combo.clear()
            for key, name in names.items():
                self.combo.addItem(name, key)
            if select is not None:
                self.combo.setCurrentIndex(self.combo.findData(select))
        finally:
            self.combo.blockSignals(False)
        self.changed.emit()

    def select(self, key) -> bool:
        """Choose the slide ``key``; ``False`` when it is not listed."""
        idx = self.combo.findData(key)
        if idx < 0:
            return False
        self.combo.setCurrentIndex(idx)
        return True

    def set_info(self, text: str) -> None:
        self.info.setText(text)
