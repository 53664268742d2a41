"""Widget settings and where they persist between sessions (a JSON file in the user config dir).

``NAPARI_S2S_CONFIG_DIR`` overrides the folder (tests point it at a temporary one).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..core.s2s.genes import AUX_GENES

PRESETS = ("fast", "paper")
DEVICES = ("auto", "cpu", "cuda", "mps")


#: Most auxiliary training genes the dock offers.
MAX_AUX_GENES = 500

#: H&E guidance choices (see ``S2SConfig.histology``).
HISTOLOGY_MODES = ("off", "auto", "on")


@dataclass
class WidgetSettings:
    """What the dock widget remembers.

    ``cascades`` and ``features`` are the advanced model-size overrides (``None``: the preset's).
    ``model_at_spots``: the imputed stack shows the network's output at the measured spots too
    (smoother) instead of the measured values there; display only, saved files keep them exact.
    """

    preset: str = "fast"
    cascades: int | None = None
    features: int | None = None
    budget_s: float = 60.0
    device: str = "auto"
    natural_images: bool = True
    histology: str = "auto"
    aux_genes: int = AUX_GENES  # genes of the slide trained on besides the picked ones (never imputed)
    seed: int = 0
    top_n: int = 8
    last_dir: str = ""
    model_at_spots: bool = False  # imputed maps show the network's output at measured spots (display only)

    @classmethod
    def from_dict(cls, d: dict) -> WidgetSettings:
        """Build from a dict, ignoring unknown keys and values of the wrong type."""
        out = cls()
        for f in fields(cls):
            if f.name not in d:
                continue
            value = d[f.name]
            default = getattr(out, f.name)
            if value is None and f.name in ("cascades", "features"):
                setattr(out, f.name, None)
            elif isinstance(default, bool):
                if isinstance(value, bool):
                    setattr(out, f.name, value)
            elif isinstance(default, (int, float)) and not isinstance(default, bool):
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    setattr(out, f.name, type(default)(value))
            elif f.name in ("cascades", "features"):
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    setattr(out, f.name, value)
            elif isinstance(value, str):
                setattr(out, f.name, value)
        if out.preset not in PRESETS:
            out.preset = "fast"
        if out.device not in DEVICES:
            out.device = "auto"
        if out.histology not in HISTOLOGY_MODES:
            out.histology = "auto"
        if not 0 <= out.aux_genes <= MAX_AUX_GENES:
            out.aux_genes = AUX_GENES
        return out

    def config_overrides(self) -> dict:
        """Keyword overrides for ``S2SConfig.from_preset(self.preset, **overrides)``."""
        over = {
            "budget_s": float(self.budget_s),
            "device": self.device,
            "natural_images": bool(self.natural_images),
            "histology": self.histology,
            "aux_genes": int(self.aux_genes),
            "seed": int(self.seed),
        }
        if self.cascades is not None:
            over["cascades"] = int(self.cascades)
        if self.features is not None:
            over["features"] = int(self.features)
        return over


def config_dir() -> Path:
    """The user config folder of napari-s2s (``$NAPARI_S2S_CONFIG_DIR`` when set)."""
    env = os.environ.get("NAPARI_S2S_CONFIG_DIR")
    if env:
        return Path(env)
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return base / "napari-s2s"


class SettingsStore:
    """Load and save :class:`WidgetSettings` as ``widget.json`` in :func:`config_dir`."""

    def __init__(self, folder: str | Path | None = None):
        self.path = Path(folder or config_dir()) / "widget.json"
        self._written: dict | None = None  # what this store last wrote (unchanged settings are not rewritten)

    def load(self) -> WidgetSettings:
        """The saved settings, or defaults when there are none or the file is unreadable."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return WidgetSettings()
        return WidgetSettings.from_dict(data if isinstance(data, dict) else {})

    def save(self, settings: WidgetSettings) -> None:
        """Write atomically, unless these settings are the ones last written (a write can take a
        noticeable time on a busy disk, in the GUI thread); failures (read-only home) are ignored:
        settings are a convenience."""
        data = asdict(settings)
        if data == self._written:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".widget-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2)
            os.replace(tmp, self.path)
            self._written = data
        except OSError:
            pass
