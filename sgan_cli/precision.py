"""Numeric precision and memory layout of the training step: bf16 autocast where the hardware
multiplies bfloat16 natively, channels-last tensors on the CPU."""

from __future__ import annotations

import torch

PRECISIONS = ("fp32", "bf16", "auto")


def native_bf16(device: torch.device) -> bool:
    """Whether the device multiplies bfloat16 in hardware: CUDA GPUs from Ampere on, CPUs
    with AMX or AVX512-BF16 (elsewhere bf16 is emulated and slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private, hence getattr
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """``train.precision`` → the autocast dtype of the forward passes, None for fp32 throughout.

    bf16 is mixed precision: matmuls and convolutions run in bfloat16 with fp32 accumulation,
    weights, optimiser states and losses stay fp32 (the loss functions cast their inputs).
    "auto" picks bf16 only where :func:`native_bf16` says it is fast.
    """
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}")  # check_train_config reports it to users
    if name == "bf16" or (name == "auto" and native_bf16(device)):
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """The forward passes' precision context (a no-op for fp32)."""
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def preferred_layout(device: torch.device) -> torch.memory_format:
    """channels-last (NHWC) on CPU: oneDNN's convolutions skip their NCHW↔NHWC reorders
    (measured 1.1–1.3× per training step, benchmarks/bench_train.py); CUDA keeps NCHW (not
    measured there)."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format
