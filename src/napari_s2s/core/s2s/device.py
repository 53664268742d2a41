"""Compute devices: which exist here, and turning a name into a ``torch.device``."""

from __future__ import annotations

import torch

from ..errors import SlideError

DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """Device names usable here, in order: ``["auto", "cpu"]`` plus ``"cuda"`` / ``"mps"`` when present."""
    out = ["auto", "cpu"]
    if torch.cuda.is_available():
        out.append("cuda")
    if _mps_available():
        out.append("mps")
    return out


def resolve_device(name: str = "auto") -> torch.device:
    """``torch.device`` for a name; ``auto`` picks CUDA, then MPS, then CPU.

    Raises
    ------
    SlideError
        For an unknown name, or a GPU asked for that this machine does not have.
    """
    name = (name or "auto").lower()
    if name not in DEVICE_NAMES:
        raise SlideError(None, f"unknown device {name!r} (choose from {', '.join(DEVICE_NAMES)})")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SlideError(None, "device 'cuda' requested but no CUDA GPU is available (use --device cpu or auto)")
    if name == "mps" and not _mps_available():
        raise SlideError(None, "device 'mps' requested but Apple MPS is not available (use --device cpu or auto)")
    return torch.device(name)


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), read from ``/proc/cpuinfo``.

    Elsewhere (no such file, other systems) ``False``: emulated bfloat16 is slower than float32.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def use_bfloat16(device: torch.device, precision: str = "auto") -> bool:
    """Whether inference on ``device`` runs in bfloat16: ``"bfloat16"`` always, ``"float32"`` never,
    ``"auto"`` on CPUs with native bfloat16 (measured ~1.5-2.6x faster there; GPUs stay float32)."""
    if precision == "bfloat16":
        return True
    if precision == "float32":
        return False
    return device.type == "cpu" and cpu_has_native_bfloat16()
