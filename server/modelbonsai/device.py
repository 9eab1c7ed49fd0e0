"""Device selection: `auto` picks CUDA, then MPS, then CPU."""

from __future__ import annotations

import torch

from .errors import UserError


class DeviceError(UserError, ValueError):
    """A device the user asked for that is not available here."""


def resolve_device(name: str = "auto") -> torch.device:
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device 'cuda' was asked for, but PyTorch sees no CUDA device")
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError("device 'mps' was asked for, but this PyTorch has no MPS device")
    if name not in ("cpu", "cuda", "mps") and not name.startswith("cuda:"):
        raise DeviceError(f"unknown device '{name}': use auto, cpu, cuda or mps")
    return torch.device(name)
