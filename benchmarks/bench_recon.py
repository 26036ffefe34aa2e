"""How far the in-loop reconstructor E is from the best encoder of its generator.

Trains a run in memory (``--set`` overrides on top of ``--recipe``), then freezes the final
generator G and trains encoders on ‖E(G(z)) − z‖² alone, on fresh z, for ``--opt-steps``:
a copy of the in-loop E (how much it still had to gain) and a fresh E of the same build
(the frozen-G optimum estimate, the better of the two is taken). Every ‖E(G(z)) − z‖² per
dimension is measured on the same 4,096 held-out z, G in training mode with its BatchNorm
buffers restored after each pass (as the loop sees it). E ≡ 0 scores ≈ 1.

    python benchmarks/bench_recon.py --recipe recipes/quickstart.yaml --set train.dict=dictionary.safetensors
    python benchmarks/bench_recon.py ... --set recon.steps=5 --set recon.lr=1e-3 --json
    python benchmarks/bench_recon.py --smoke    # seconds: the quick start over a 16-atom dictionary, 4 + 2 steps

Prints its result; writes nothing (``--smoke`` learns its dictionary in a temporary folder).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness

import sgan_cli
from sgan_cli.builders import Geometry, adam
from sgan_cli.checkpoint import new_state
from sgan_cli.config import load_config
from sgan_cli.contracts import load_dictionary
from sgan_cli.data import load_data
from sgan_cli.losses import latent_recon_loss
from sgan_cli.training import train_steps

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def held_out_error(G: torch.nn.Module, E: torch.nn.Module, z: torch.Tensor) -> float:
    """‖E(G(z)) − z‖² per dimension, G's BatchNorm buffers left as they were."""
    buffers = [b.clone() for b in G.buffers()]
    with torch.no_grad():
        err = float(sum(latent_recon_loss(E(G(c)), c) * len(c) for c in z.split(512)) / len(z))
        for b, saved in zip(G.buffers(), buffers):
            b.copy_(saved)
    return err


def fit_encoder(G, E, z_dim, steps, lr, batch, seed) -> torch.nn.Module:
    """E trained alone on the frozen G for ``steps`` Adam steps (β = 0.5, 0.9) on fresh z."""
    E = copy.deepcopy(E).train()
    opt = adam(E.parameters(), lr, (0.5, 0.9))
    gen = torch.Generator().manual_seed(seed)
    buffers = [b.clone() for b in G.buffers()]
    for _ in range(steps):
        z = torch.randn(batch, z_dim, generator=gen)
        with torch.no_grad():
            x = G(z)
        loss = latent_recon_loss(E(x), z)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        for b, saved in zip(G.buffers(), buffers):
            b.copy_(saved)
    return E


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe")
    ap.add_argument("--set", action="append", default=[], dest="sets")
    ap.add_argument("--opt-steps", type=int, default=2000, help="encoder steps on the frozen generator")
    ap.add_argument("--opt-lr", type=float, default=1e-3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="seconds: recipes/quickstart.yaml over a 16-atom dictionary (learned in a temp folder), 4 steps, "
        "2 encoder steps (checks the script)",
    )
    args = ap.parse_args()
    if not args.smoke:
        run(args)
        return
    with harness.work_folder(None, "bench-recon") as work:
        dictionary = work / "dictionary.safetensors"
        sgan_cli.learn_dictionary("digits", atoms=16, alpha=0.5).save(dictionary)
        args.recipe = args.recipe or str(RECIPES / "quickstart.yaml")
        args.sets = [f"train.dict={dictionary}", "train.steps=4", "train.log_every=2", *args.sets]
        args.opt_steps = 2
        run(args)


def run(args: argparse.Namespace) -> None:
    """Train the run in memory, fit the encoders on its frozen generator, print the result."""
    cfg = load_config(args.recipe, args.sets)
    data = load_data(cfg.data)
    dictionary = load_dictionary(cfg.train.dict) if cfg.train.dict else None
    state = new_state(cfg, Geometry(data.channels, data.image_size), dictionary, torch.device("cpu"))
    logs: list[dict] = []
    t0 = time.perf_counter()
    train_steps(state, cfg, data.floats(), cfg.train.steps, on_log=logs.append)
    train_s = time.perf_counter() - t0
    G, E, z_dim = state.generator, state.encoder, cfg.model.z_dim
    z = torch.randn(4096, z_dim, generator=torch.Generator().manual_seed(12345))
    t0 = time.perf_counter()
    more = fit_encoder(G, E, z_dim, args.opt_steps, args.opt_lr, cfg.train.batch_size, 1)
    torch.manual_seed(7)
    fresh_init = type(E)(copy.deepcopy(E.features), z_dim, E.mode)
    for m in fresh_init.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    fresh = fit_encoder(G, fresh_init, z_dim, args.opt_steps, args.opt_lr, cfg.train.batch_size, 2)
    result = {
        "sets": args.sets,
        "steps": cfg.train.steps,
        "train_s": round(train_s, 1),
        "recon_e_logged_first": logs[0].get("recon_e"),
        "recon_e_logged_last": logs[-1].get("recon_e"),
        "recon_gap_logged_last": logs[-1].get("recon_gap"),
        "in_loop_E": held_out_error(G, E, z),
        "in_loop_E_more_steps": held_out_error(G, more, z),
        "fresh_E_frozen_G": held_out_error(G, fresh, z),
        "opt_steps": args.opt_steps,
        "opt_s": round(time.perf_counter() - t0, 1),
        "curve": [(e["step"], round(e.get("recon_e", float("nan")), 4)) for e in logs],
    }
    result["optimum"] = min(result["in_loop_E_more_steps"], result["fresh_E_frozen_G"])
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
