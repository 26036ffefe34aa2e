"""The WGAN-GP penalty alone: sgan's first-order input gradient against autograd's double backward.

Times mean_i (‖∇ₓD(x̂_i)‖ − 1)² and its backward into the critic's weights, computed the
usual way (``autograd.grad(..., create_graph=True)`` then ``backward``) and through
``sgan_cli.input_grad.input_gradient`` (no second pass through D(x̂)), on sgan's critics in
the NCHW layout, alternating, best of ``--repeats``. Also prints the largest relative
difference of the two parameter gradients (float32).

    python benchmarks/bench_penalty.py
    python benchmarks/bench_penalty.py --smoke      # seconds: every critic at batch 2, one step, no results written

Results: ``benchmarks/results/penalty.json`` (``--out``; none with ``--smoke`` unless given).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from sgan_cli.critics import Critic, DCGANFeatures, MLPFeatures, ResNetFeatures
from sgan_cli.input_grad import input_gradient

HERE = Path(__file__).resolve().parent

# name → (critic factory, input shape [B, C, H, W])
CASES = {
    "dcgan 28×28 w64 (mnist-dense)": (lambda: Critic(DCGANFeatures(1, 28, 64)), (50, 1, 28, 28)),
    "dcgan 28×28 w32 (mnist-patch)": (lambda: Critic(DCGANFeatures(1, 28, 32)), (50, 1, 28, 28)),
    "dcgan 8×8 w64 (quickstart)": (lambda: Critic(DCGANFeatures(1, 8, 64)), (64, 1, 8, 8)),
    "resnet 32×32 w32 (cifar)": (lambda: Critic(ResNetFeatures(3, 32, 32)), (32, 3, 32, 32)),
    "mlp 784 w256 (study critic)": (lambda: Critic(MLPFeatures(784, 256)), (64, 1, 28, 28)),
}


def _double_backward(critic: nn.Module, x_hat: torch.Tensor) -> torch.Tensor:
    x = x_hat.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return (g.flatten(1).norm(dim=1) - 1).pow(2).mean()


def _first_order(critic: nn.Module, x_hat: torch.Tensor) -> torch.Tensor:
    return (input_gradient(critic, x_hat).flatten(1).norm(dim=1) - 1).pow(2).mean()


def _time(critic: nn.Module, fn, x_hat: torch.Tensor, n: int) -> float:
    def step() -> None:
        critic.zero_grad(set_to_none=True)
        fn(critic, x_hat).backward()

    step()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n


def _grads(critic: nn.Module, fn, x_hat: torch.Tensor) -> list[torch.Tensor]:
    critic.zero_grad(set_to_none=True)
    fn(critic, x_hat).backward()
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in critic.parameters()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=10, help="penalty steps per timed block")
    ap.add_argument("--repeats", type=int, default=3, help="alternating blocks; the best is kept")
    ap.add_argument(
        "--out", type=Path, default=None, help="JSON results (default results/penalty.json; none with --smoke)"
    )
    ap.add_argument("--smoke", action="store_true", help="seconds: every critic at batch 2, one step, once")
    args = ap.parse_args()
    if args.smoke:
        args.iters, args.repeats = 1, 1
    elif args.out is None:
        args.out = HERE / "results" / "penalty.json"
    print(f"{'critic':<32} {'double bwd ms':>13} {'first-order ms':>15} {'speed-up':>9} {'max rel Δgrad':>14}")
    rows = []
    for name, (make, shape) in CASES.items():
        torch.manual_seed(0)
        critic = make()
        x_hat = torch.randn((2, *shape[1:]) if args.smoke else shape)
        ref, ours = _grads(critic, _double_backward, x_hat), _grads(critic, _first_order, x_hat)
        rel = max(float((a - b).abs().max() / a.abs().max().clamp_min(1e-30)) for a, b in zip(ref, ours))
        t_ref = t_ours = float("inf")
        for _ in range(args.repeats):
            t_ref = min(t_ref, _time(critic, _double_backward, x_hat, args.iters))
            t_ours = min(t_ours, _time(critic, _first_order, x_hat, args.iters))
        rows.append(
            {
                "critic": name,
                "double_backward_ms": t_ref * 1e3,
                "first_order_ms": t_ours * 1e3,
                "speedup": t_ref / t_ours,
                "max_rel_grad_diff": rel,
            }
        )
        print(f"{name:<32} {t_ref * 1e3:>13.2f} {t_ours * 1e3:>15.2f} {t_ref / t_ours:>8.2f}× {rel:>14.1e}", flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
