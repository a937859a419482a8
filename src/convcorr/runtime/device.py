"""Torch device selection: CUDA when present (and not disabled), else CPU."""
from __future__ import annotations

import os

import torch


def default_device() -> torch.device:
    """``cuda`` when available unless CONVCORR_DEVICE overrides it (e.g. ``cpu``)."""
    forced = os.environ.get("CONVCORR_DEVICE")
    if forced:
        return torch.device(forced)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
