"""Several processes under ``torchrun``: one training run, one sample set, one score.

``torchrun --nproc-per-node N -m sgan_cli train …`` starts N copies of sgan with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` (and the rendezvous address) in their environment. This
module is everything sgan does with that:

- :func:`from_env` reads the rank and world size; :func:`session` joins the process group
  (gloo for CPU tensors, NCCL for CUDA tensors: ``"cpu:gloo,cuda:nccl"`` when a GPU is
  present; destroyed when the process exits). Ctrl-C / SIGTERM become *stop requests*
  (with :class:`sgan_cli.interrupt.StopRequest` inside; when its first signal restores the
  previous handler, that is this module's, so torchrun's forwarded second SIGINT is a
  request too) that the training loop combines over the ranks after each step
  (:func:`any_rank`): every rank stops at the same step and rank 0 writes one checkpoint.
- Training is data-parallel with one seeded stream: every rank draws the *global* minibatch
  (indices, z, ε — ``train.batch_size`` rows) from the same ``torch.Generator`` and keeps
  its own contiguous slice (:func:`shard`). The random streams stay identical on all ranks,
  and a 2-rank run sees the very numbers a 1-process run sees.
- :func:`average_gradients` averages each optimiser's gradients over the ranks before its
  step: one flat ``all_reduce`` per optimiser step, as StyleGAN3 does (NVlabs/stylegan3,
  training/training_loop.py, "Update weights"). It replaces DDP's wrapper because a GAN step
  breaks the wrapper's assumptions — the critic runs with frozen weights inside the
  generator's step, the gradient penalty builds its own first-order graph through the
  critic's layers (sgan_cli/input_grad.py), and the reconstructor phase calls G twice per
  step — while the arithmetic is the same (mean of per-rank gradients of per-rank means).
- Sampling and scoring give each rank every W-th batch of the single-process run
  (:func:`owned`), so each batch is computed exactly as one process computes it, and
  :func:`combine` sums the rows (each row is non-zero on one rank only, so the sum is exact):
  outputs are bit-identical to one process.
- :class:`GlobalBatchNorm` / :func:`sync_batchnorm`: BatchNorm over the global batch
  (``train.sync_bn``); torch's ``nn.SyncBatchNorm`` is used on CUDA, this one on CPU, where
  torch's refuses CPU tensors.

Only rank 0 writes files (:func:`is_main`); the CLI prints on rank 0 only.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
from torch import Tensor, nn

from .errors import SganError


@dataclass(frozen=True)
class World:
    """This process's place among the ranks (rank 0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def _env_int(key: str, default: int) -> int:
    raw = os.environ.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SganError(
            f"the environment variable {key}={raw!r} is not an integer",
            where=key,
            fix="launch sgan with torchrun, or unset RANK / WORLD_SIZE / LOCAL_RANK",
        ) from None


def from_env() -> World:
    """The world torchrun describes in ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (rank 0 of 1
    when they are unset). Raises SganError on values that cannot be right."""
    size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", 0)
    if size < 1 or not 0 <= rank < size or local < 0:
        raise SganError(
            f"RANK={rank}, WORLD_SIZE={size}, LOCAL_RANK={local} do not describe a rank",
            where="RANK / WORLD_SIZE / LOCAL_RANK",
            fix="launch sgan with torchrun, or unset them",
        )
    return World(rank, size, local)


_WORLD = World()
_STOP = False  # a stop request (Ctrl-C / SIGTERM) seen by this rank, not yet acted on


def current() -> World:
    """The world of the open :func:`session` (rank 0 of 1 outside one)."""
    return _WORLD


def is_main() -> bool:
    """Whether this process writes files (rank 0, or the only process)."""
    return _WORLD.main


def backend(cuda: bool) -> str:
    """gloo for CPU tensors; with a GPU, NCCL for CUDA tensors and gloo for CPU ones."""
    return "cpu:gloo,cuda:nccl" if cuda else "gloo"


def _request_stop(signum: int, frame: Any) -> None:
    global _STOP
    _STOP = True


def stop_requested() -> bool:
    return _STOP


@contextmanager
def session(what: str) -> Iterator[World]:
    """Join the process group when launched by torchrun with WORLD_SIZE > 1.

    The group is created once per process and destroyed at exit (torch cannot re-create
    the default group on torchrun's store within one process, and one process may run
    several commands in-process, as the tests do). Inside, SIGINT and SIGTERM only
    *request* a stop (:func:`stop_requested`); the training loop agrees on it at the next
    step boundary with :func:`any_rank`. Without torchrun this is a no-op (Ctrl-C raises
    KeyboardInterrupt as usual).
    """
    global _WORLD, _STOP
    world = from_env()
    if not world.distributed:
        yield world
        return
    _join(world, what)
    old = {sig: signal.signal(sig, _request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    _WORLD, _STOP = world, False
    try:
        yield world
    except BaseException:
        # leaving with an error: keep SIGTERM/SIGINT as stop requests, so the launcher's
        # SIGTERM (sent when another rank fails) cannot cut this rank's message short
        _WORLD = World()
        raise
    for sig, handler in old.items():
        signal.signal(sig, handler)
    _WORLD, _STOP = World(), False


def _join(world: World, what: str) -> None:
    """init_process_group once for this process (gloo; NCCL too with a GPU), destroyed at exit."""
    import atexit

    import torch.distributed as dist

    if dist.is_initialized():
        return
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(world.local_rank % torch.cuda.device_count())
    try:
        dist.init_process_group(backend(cuda), rank=world.rank, world_size=world.size, timeout=timedelta(minutes=30))
    except (RuntimeError, ValueError) as exc:
        raise SganError(
            f"{what}: could not join the other ranks ({exc})",
            where="torchrun",
            fix="check the --rdzv-endpoint / MASTER_ADDR and MASTER_PORT, and that every rank started",
        ) from None
    atexit.register(dist.destroy_process_group)


def local_device(device: torch.device) -> torch.device:
    """A rank's device: ``cuda:LOCAL_RANK`` (one GPU per rank) for CUDA, else unchanged."""
    if device.type == "cuda" and _WORLD.distributed:
        return torch.device("cuda", _WORLD.local_rank % torch.cuda.device_count())
    return device


def _collective(fn: Callable[[], Any]) -> Any:
    """Run a collective; a peer that died (its process failed or was stopped) becomes one
    clear SganError on this rank instead of a backend traceback."""
    try:
        return fn()
    except (RuntimeError, OSError) as exc:
        if "ConnectionClosed" in type(exc).__name__ or any(
            s in str(exc)
            for s in (
                "Connection closed",
                "connection closed",
                "Connection reset",
                "Broken pipe",
                "Timed out",
                "timed out",
                "NCCL",
            )
        ):
            raise SganError(
                f"rank {_WORLD.rank} lost contact with the other ranks (one of them failed or was stopped): {exc}",
                where="torchrun",
                fix=(
                    "torchrun's failure summary names the rank that failed "
                    "first; the files of the last completed save are intact"
                ),
            ) from None
        raise


def all_sum(t: Tensor) -> Tensor:
    """Sum ``t`` over the ranks, in place (identity for one process)."""
    if _WORLD.distributed:
        import torch.distributed as dist

        _collective(lambda: dist.all_reduce(t))
    return t


def any_rank(flag: bool, values: Sequence[float] = ()) -> tuple[bool, list[float]]:
    """One collective per training step: whether any rank asks to stop, and the mean of
    ``values`` over the ranks (losses of each rank's shard → losses of the global batch)."""
    if not _WORLD.distributed:
        return flag, list(values)
    t = torch.tensor([*values, float(flag)], dtype=torch.float64)
    all_sum(t)
    out = (t[:-1] / _WORLD.size).tolist()
    return bool(t[-1] > 0), out


def barrier() -> None:
    if _WORLD.distributed:
        import torch.distributed as dist

        _collective(dist.barrier)


def check_divisible(batch_size: int, where: str) -> int:
    """The per-rank batch: ``batch_size`` / world size, which must divide evenly."""
    size = _WORLD.size
    if batch_size % size:
        raise SganError(
            f"the global batch {batch_size} does not split evenly over {size} ranks",
            where=where,
            fix=f"use a multiple of {size}, e.g. {max(size, batch_size - batch_size % size)}",
        )
    return batch_size // size


def shard(t: Tensor) -> Tensor:
    """This rank's contiguous slice of a global minibatch [B, …] (rows r·B/W … (r+1)·B/W)."""
    if not _WORLD.distributed:
        return t
    b = t.shape[0] // _WORLD.size
    return t[_WORLD.rank * b : (_WORLD.rank + 1) * b]


def global_mean(t: Tensor) -> Tensor:
    """mean over dim 0 of the global batch, from this rank's shard [b, …] → [...].

    The value is the global mean; the gradient flows through this rank's own mean only, so
    after :func:`average_gradients` it equals the 1-process gradient (shards of equal size).
    Used where a loss is not a mean of per-sample terms (feature matching).
    """
    local = t.mean(0)
    if not _WORLD.distributed:
        return local
    total = all_sum(local.detach().clone()) / _WORLD.size
    return local + (total - local.detach())


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Replace each gradient by its mean over the ranks: one flat all_reduce per dtype."""
    if not _WORLD.distributed:
        return
    with_grad = [p for p in params if p.grad is not None]
    by_dtype: dict[torch.dtype, list[nn.Parameter]] = {}
    for p in with_grad:
        by_dtype.setdefault(p.grad.dtype, []).append(p)  # type: ignore[union-attr]
    for group in by_dtype.values():
        flat = torch.cat([p.grad.reshape(-1) for p in group])  # type: ignore[union-attr]
        all_sum(flat)
        flat /= _WORLD.size
        for p, g in zip(group, flat.split([p.numel() for p in group])):
            p.grad.copy_(g.view(p.shape))  # type: ignore[union-attr]


def step(opt: torch.optim.Optimizer) -> None:
    """``opt.step()`` on the gradients averaged over the ranks."""
    average_gradients(p for group in opt.param_groups for p in group["params"])
    opt.step()


def broadcast_state(modules: Iterable[nn.Module]) -> None:
    """Copy rank 0's parameters and buffers to every rank (the start of a run; also a barrier)."""
    if not _WORLD.distributed:
        return
    import torch.distributed as dist

    for module in modules:
        for t in [*module.parameters(), *module.buffers()]:
            with torch.no_grad():
                buf = t.detach().contiguous()
                _collective(lambda buf=buf: dist.broadcast(buf, 0))
                if buf.data_ptr() != t.data_ptr():
                    t.copy_(buf)


def gather_rows(t: Tensor) -> Tensor:
    """Every rank's ``t`` (same shape on all) stacked [W, …] in rank order."""
    if not _WORLD.distributed:
        return t.unsqueeze(0)
    import torch.distributed as dist

    out = [torch.empty_like(t) for _ in range(_WORLD.size)]
    _collective(lambda: dist.all_gather(out, t.contiguous()))
    return torch.stack(out)


# --- work split for sampling and scoring -------------------------------------------------


def owned(n_batches: int) -> list[int]:
    """The batches this rank computes: every W-th one from its rank (round robin), so each
    batch holds the very rows a single process would put in it."""
    return list(range(_WORLD.rank, n_batches, _WORLD.size))


def combine(t: Tensor) -> Tensor:
    """Rows filled on one rank each (zeros elsewhere) → every row on every rank, exactly
    (x + 0 = x). Integer images are summed as int32."""
    if not _WORLD.distributed:
        return t
    if t.dtype in (torch.uint8, torch.int8, torch.int16, torch.bool):
        return all_sum(t.to(torch.int32)).to(t.dtype)
    return all_sum(t)


# --- BatchNorm over the global batch -----------------------------------------------------


class _SumOverRanks(torch.autograd.Function):
    """Σ over ranks, differentiable: the gradient of a sum over ranks is the sum over ranks of
    the gradients (each rank's loss depends on every rank's shard through the statistics)."""

    @staticmethod
    def forward(ctx: Any, t: Tensor) -> Tensor:  # type: ignore[override]
        return all_sum(t.clone())

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        return all_sum(grad.clone())


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch (every rank's
    shard), for CPU ranks; the same arithmetic as ``torch.nn.SyncBatchNorm`` (which accepts
    only accelerator tensors): mean = Σx/N and biased var = Σ(x−mean)²/N over all ranks
    (two-pass), running var updated with the unbiased N/(N−1) estimate, gradients through
    the statistics summed over ranks (:class:`_SumOverRanks`).
    Input [B, C] or [B, C, *]; outside a distributed run it is plain BatchNorm.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and _WORLD.distributed):
            return super().forward(x)
        all_reduce = _SumOverRanks.apply
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        count = float(x.numel() // x.shape[1] * _WORLD.size)  # equal shards on every rank
        mean = all_reduce(xf.sum(dims)) / count
        centred = xf - mean.view(shape)
        var = all_reduce(centred.pow(2).sum(dims)) / count
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1  # type: ignore[operator]
                factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)  # type: ignore[arg-type]
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                self.running_var.lerp_(
                    (var.detach() * count / max(count - 1.0, 1.0)).to(self.running_var.dtype), factor
                )
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def sync_batchnorm(module: nn.Module, cuda: bool) -> nn.Module:
    """Every BatchNorm in ``module`` computed over the global batch: torch's SyncBatchNorm
    on CUDA, :class:`GlobalBatchNorm` on CPU. Weights, buffers and layout are kept."""
    if cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        new = GlobalBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        # the same parameter and buffer objects (as torch's convert_sync_batchnorm keeps them)
        for name, p in module.named_parameters(recurse=False):
            setattr(new, name, p)
        for name, b in module.named_buffers(recurse=False):
            setattr(new, name, b)
        new.train(module.training)
        return new
    for name, child in module.named_children():
        setattr(module, name, sync_batchnorm(child, cuda))
    return module
