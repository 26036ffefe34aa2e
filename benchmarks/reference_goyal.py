"""A plain PyTorch loop of Goyal's MNIST GANs: the quality reference for sgan's MNIST recipes.

A. Goyal, *Generative Adversarial Nets (GANs): Training Algorithms*, EE5239 report, 2019:
the nets of its Appendix I, its Algorithm 1 and the hyper-parameters of its Table 1, written
the way most GAN code is written (no sgan code in the loop), so that sgan's recipes can be
compared with it at equal iterations:

- generator: z ∈ R¹⁰⁰ → Linear 12,544 (no bias) → BatchNorm → LeakyReLU → 7×7×256 →
  ConvTranspose 5×5/1 → 128 → BN → LeakyReLU → ConvTranspose 5×5/2 → 64 → BN → LeakyReLU →
  ConvTranspose 5×5/2 → 1, tanh;
- critic: Conv 5×5/2 → 64, LeakyReLU, Dropout 0.3 → Conv 5×5/2 → 128, LeakyReLU, Dropout 0.3
  → Linear 6,272 → 1;
- ``gan``: BCE critic, non-saturating generator loss, Adam 2e-4 (β₁ 0.5), 1 critic step;
  ``wgan``: RMSprop 5e-5, weights clipped to ±0.01, 5 critic steps; ``wgan-gp``: Adam 1e-4
  (0.5, 0.9), gradient penalty λ = 10 on the whole flattened gradient, 5 critic steps;
- batch 50, images in [−1, 1], shuffled epochs.

Every ``--eval-every`` iterations it writes ``--eval-samples`` samples as PNGs, scores them
as ``sgan score`` does (``sgan_cli.score``: classifier features, against the training images)
and appends one JSON line to ``metrics.jsonl`` (the scores under ``scores.metrics``, which
``plot_mnist_runs.py`` reads); a checkpoint (safetensors, no pickle) is written at the same
time, and ``--resume`` continues bit for bit. Example (mnist-5k, 15,000 iterations)::

    python benchmarks/reference_goyal.py --objective gan --data-root DATA \
        --classifier mnist-classifier.safetensors --out results/reference/gan-s0 --seed 0
    python benchmarks/reference_goyal.py --smoke      # seconds: 1 iteration, resumed for a 2nd, scored

``--smoke`` trains at batch 8 on 200 images, one iteration unscored, then resumed for a second
one whose 50 samples it scores, in a temporary folder (or the ``--out`` given); without
``--data-root`` on stand-in MNIST images (digits upscaled to 28×28), without ``--classifier``
with a one-epoch classifier of them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness

HYPER = {  # objective → (critic steps, optimiser, lr, betas)
    "gan": (1, "adam", 2e-4, (0.5, 0.999)),
    "wgan": (5, "rmsprop", 5e-5, None),
    "wgan-gp": (5, "adam", 1e-4, (0.5, 0.9)),
}


def generator() -> nn.Module:
    return nn.Sequential(
        nn.Linear(100, 7 * 7 * 256, bias=False),
        nn.BatchNorm1d(7 * 7 * 256),
        nn.LeakyReLU(0.3),
        nn.Unflatten(1, (256, 7, 7)),
        nn.ConvTranspose2d(256, 128, 5, 1, 2, bias=False),
        nn.BatchNorm2d(128),
        nn.LeakyReLU(0.3),
        nn.ConvTranspose2d(128, 64, 5, 2, 2, output_padding=1, bias=False),
        nn.BatchNorm2d(64),
        nn.LeakyReLU(0.3),
        nn.ConvTranspose2d(64, 1, 5, 2, 2, output_padding=1, bias=False),
        nn.Tanh(),
    )


def critic() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 64, 5, 2, 2),
        nn.LeakyReLU(0.3),
        nn.Dropout(0.3),
        nn.Conv2d(64, 128, 5, 2, 2),
        nn.LeakyReLU(0.3),
        nn.Dropout(0.3),
        nn.Flatten(),
        nn.Linear(7 * 7 * 128, 1),
    )


def load_mnist(root: Path) -> torch.Tensor:
    from torchvision.datasets import MNIST

    ds = MNIST(str(root), train=True, download=False)
    return (ds.data.float().div(127.5).sub(1.0)).unsqueeze(1)  # [N, 1, 28, 28] in [−1, 1]


def make_optimizer(params, objective: str) -> torch.optim.Optimizer:
    _, kind, lr, betas = HYPER[objective]
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, betas=betas)


def save_state(path: Path, step: int, nets: dict, opts: dict, g_z: torch.Generator) -> None:
    tensors = {f"{k}.{n}": t.contiguous() for k, m in nets.items() for n, t in m.state_dict().items()}
    meta = {"step": str(step)}
    for k, opt in opts.items():
        sd = opt.state_dict()
        for pid, st in sd["state"].items():
            for n, t in st.items():
                tensors[f"opt.{k}.{pid}.{n}"] = t if torch.is_tensor(t) else torch.tensor(t)
    tensors["rng.global"] = torch.get_rng_state()
    tensors["rng.z"] = g_z.get_state()
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)


def load_state(path: Path, nets: dict, opts: dict, g_z: torch.Generator) -> int:
    from safetensors import safe_open

    tensors = load_file(str(path))
    with safe_open(str(path), "pt") as f:
        step = int(f.metadata()["step"])
    for k, m in nets.items():
        m.load_state_dict({n[len(k) + 1 :]: t for n, t in tensors.items() if n.startswith(k + ".")})
    for k, opt in opts.items():
        sd = opt.state_dict()
        state: dict = {}
        for name, t in tensors.items():
            if name.startswith(f"opt.{k}."):
                _, _, pid, n = name.split(".", 3)
                state.setdefault(int(pid), {})[n] = t
        sd["state"] = state
        opt.load_state_dict(sd)
    torch.set_rng_state(tensors["rng.global"])
    g_z.set_state(tensors["rng.z"])
    return step


def evaluate(G: nn.Module, n: int, seed: int, folder: Path, args: argparse.Namespace) -> dict:
    """n samples as PNGs in ``folder``, scored as ``sgan score FOLDER -m inception -m fid -m pr
    -m modes --ref mnist`` scores them (classifier features): ``{"metrics": {name: value}}``."""
    from PIL import Image

    import sgan_cli

    G.eval()
    g = torch.Generator().manual_seed(10_000 + seed)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        for i in range(0, n, 500):
            x = G(torch.randn(min(500, n - i), 100, generator=g)).float()
            u8 = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0].numpy()
            for j, img in enumerate(u8):
                Image.fromarray(img).save(folder / f"{i + j:05d}.png")
    G.train()
    metrics = sgan_cli.score(
        folder,
        "mnist",
        metrics=["inception", "fid", "pr", "modes"],
        features=f"classifier:{args.classifier}",
        data_root=args.data_root,
    )
    return {"metrics": metrics}


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    data = load_mnist(args.data_root)
    if args.limit:
        data = data[: args.limit]
    n, batch = len(data), args.batch_size
    G, D = generator(), critic()
    nets = {"g": G, "d": D}
    opts = {"g": make_optimizer(G.parameters(), args.objective), "d": make_optimizer(D.parameters(), args.objective)}
    g_z = torch.Generator().manual_seed(args.seed + 1)
    ckpt = out / "checkpoint.safetensors"
    step = load_state(ckpt, nets, opts, g_z) if args.resume and ckpt.exists() else 0
    k = HYPER[args.objective][0]
    amp = torch.bfloat16 if args.precision == "bf16" else None
    drawn = step * k  # critic batches drawn so far: the data order is a function of this count

    def real_batch() -> torch.Tensor:
        nonlocal drawn
        per_epoch = n // batch
        epoch, pos = divmod(drawn, per_epoch)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed * 1_000_003 + epoch))
        drawn += 1
        return data[perm[pos * batch : (pos + 1) * batch]]

    def scores(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=amp, enabled=amp is not None):
            return D(x).float().squeeze(1)

    def fake(m: int) -> torch.Tensor:
        with torch.autocast("cpu", dtype=amp, enabled=amp is not None):
            return G(torch.randn(m, 100, generator=g_z)).float()

    t0, timed = time.perf_counter(), 0.0
    while step < args.iters:
        for _ in range(k):
            x = real_batch()
            fx = fake(batch).detach()
            if args.objective == "gan":
                sr, sf = scores(x), scores(fx)
                loss_d = F.binary_cross_entropy_with_logits(sr, torch.ones_like(sr))
                loss_d = loss_d + F.binary_cross_entropy_with_logits(sf, torch.zeros_like(sf))
            else:
                loss_d = scores(fx).mean() - scores(x).mean()
                if args.objective == "wgan-gp":
                    eps = torch.rand(batch, 1, 1, 1)
                    xh = (eps * x + (1 - eps) * fx).requires_grad_(True)
                    (grad,) = torch.autograd.grad(scores(xh).sum(), xh, create_graph=True)
                    loss_d = loss_d + 10.0 * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
            opts["d"].zero_grad(set_to_none=True)
            loss_d.backward()
            opts["d"].step()
            if args.objective == "wgan":
                with torch.no_grad():
                    for p in D.parameters():
                        p.clamp_(-0.01, 0.01)
        sf = scores(fake(batch))
        if args.objective == "gan":
            loss_g = F.binary_cross_entropy_with_logits(sf, torch.ones_like(sf))
        else:
            loss_g = -sf.mean()
        opts["g"].zero_grad(set_to_none=True)
        loss_g.backward()
        opts["g"].step()
        step += 1
        if step % args.eval_every == 0 or step == args.iters:
            timed += time.perf_counter() - t0
            save_state(ckpt, step, nets, opts, g_z)
            row = {"step": step, "train_s": round(timed, 1), "loss_d": loss_d.item(), "loss_g": loss_g.item()}
            if args.classifier:
                row["scores"] = evaluate(G, args.eval_samples, args.seed, out / "samples", args)
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps({k: v for k, v in row.items() if k != "scores"}), flush=True)
            t0, timed = time.perf_counter(), 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objective", choices=list(HYPER), default="gan")
    ap.add_argument("--data-root", type=Path, default=None, help="folder holding MNIST/raw (torchvision layout)")
    ap.add_argument("--classifier", type=Path, default=None, help="sgan classifier file for scoring (else no scores)")
    ap.add_argument("--out", type=Path, default=None, help="output folder (--smoke: a temp folder by default)")
    ap.add_argument("--iters", type=int, default=15_000, help="generator iterations")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--eval-samples", type=int, default=2000)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="seconds: 1 iteration, then resumed for a 2nd, batch 8, 200 images, 50 samples scored at the end",
    )
    args = ap.parse_args()
    if not args.smoke:
        if args.data_root is None or args.out is None:
            ap.error("--data-root and --out are needed")
        train(args)
        return
    with harness.work_folder(None, "reference-goyal") as tmp:
        args.out = args.out or tmp / "run"
        args.data_root, classifier = harness.smoke_mnist(tmp, args.data_root, args.classifier)
        args.batch_size, args.limit, args.eval_every, args.eval_samples = 8, 200, 1, 50
        args.iters, args.resume, args.classifier = 1, False, None  # a checkpoint and an unscored line
        train(args)
        args.iters, args.resume, args.classifier = 2, True, classifier  # continued from it, scored
        train(args)
        from plot_mnist_runs import reference_evals, table

        print(table({args.out.name: reference_evals(args.out)}))


if __name__ == "__main__":
    main()
