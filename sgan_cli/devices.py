"""Which device computes: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, checked against this
machine before any work (the rank's own GPU under torchrun is :func:`sgan_cli.distributed.local_device`)."""

from __future__ import annotations

import torch

from .errors import SganError


def resolve_device(name: str) -> torch.device:
    """ "auto" → CUDA when present, else CPU; "cpu", "cuda", "cuda:N" (N < the GPU count) and
    "mps" (Apple GPUs) when this machine has them. Anything else ("meta", "tpu", a GPU that
    is absent) is one SganError before any work."""
    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    usable = "auto, cpu" + (", cuda" if torch.cuda.is_available() else "") + (", mps" if mps_available() else "")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise SganError("CUDA was requested but no GPU is available", where="device", fix=f"use device {usable}")
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise SganError(
                f"no GPU {name!r} on this machine ({torch.cuda.device_count()} GPU(s): cuda:0 …)",
                where="device",
                fix=f"use device {usable}",
            )
        return torch.device(name)
    if name == "mps":
        if not mps_available():
            raise SganError(
                "the Apple GPU (mps) was requested but this machine has none",
                where="device",
                fix=f"use device {usable}",
            )
        return torch.device("mps")
    raise SganError(f"unknown device {name!r}", where="device", fix=f"use {usable}")


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
