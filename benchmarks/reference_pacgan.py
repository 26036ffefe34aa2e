"""A plain PyTorch loop of PacGAN's stacked-MNIST nets: the reference for sgan's stacked recipes.

Z. Lin, A. Khetan, G. Fanti, S. Oh, *PacGAN: The power of two samples in generative adversarial
networks*, NeurIPS 2018, Table 3 (the Unrolled-GAN setting), transcribed from its TensorFlow
code (github.com/fjxmlzn/PacGAN, ``stacked_MNIST_experiments/unrolled_GAN_experiment``), with
no sgan code in the loop:

- generator: z ∈ R²⁵⁶ → Linear 1,024 → 4×4×64 → BatchNorm → ReLU → 3×3 stride-2 transposed
  convs to 32, 16, 8 channels (4 → 7 → 14 → 28), each BatchNorm → ReLU → 3×3 conv to 3, tanh;
- critic (``--width`` 2: "¼ of G", 4: "½ of G"): 3×3 stride-2 convs to w, 2w, 4w channels, each
  BatchNorm → LeakyReLU 0.3, then Linear → 1; with ``--pack m`` it reads m samples
  concatenated along channels (PacDCGANm);
- weights N(0, 0.02²) (convs truncated at 2σ), biases 0; BCE, one critic then one generator
  step on the same z; Adam 2e-4 (critic) and 1e-4 (generator), β = (0.5, 0.99); batch 128;
- each real batch stacks 3·m MNIST digits drawn afresh (PacGAN's ``generate_stacked_mnist``),
  images in [−1, 1].

At each ``--eval-at`` step and at the end it scores ``--samples`` samples as PacGAN does (each
channel read by an MNIST classifier: modes of 1,000 and KL to uniform) and appends one JSON
line to ``OUT/metrics.jsonl``; it also writes a 64-sample grid. It does not resume (runs are
minutes long); a finished ``OUT`` is refused.

    python benchmarks/reference_pacgan.py --data-root DATA --classifier mnist-classifier.safetensors \\
        --out results/reference-pacgan/dcgan-s0 --steps 10000 --eval-at 1000 2500 5000
    python benchmarks/reference_pacgan.py --smoke     # seconds: 2 steps at batch 8, 50 samples scored

``--smoke`` runs in a temporary folder (or the ``--out`` given); without ``--data-root`` on
stand-in MNIST images (digits upscaled to 28×28), without ``--classifier`` with a one-epoch
classifier of them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from reference_goyal import load_mnist

Z_DIM = 256


def dcgan_init(module: nn.Module) -> None:
    """DCGAN-tensorflow's initialisers, as PacGAN's ``ops.py`` draws them."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.trunc_normal_(m.weight, std=0.02, a=-0.04, b=0.04)
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)


def generator() -> nn.Module:
    def up(c_in: int, c_out: int, output_padding: int) -> list[nn.Module]:
        return [nn.ConvTranspose2d(c_in, c_out, 3, 2, 1, output_padding), nn.BatchNorm2d(c_out), nn.ReLU()]

    G = nn.Sequential(
        nn.Linear(Z_DIM, 64 * 4 * 4), nn.Unflatten(1, (64, 4, 4)), nn.BatchNorm2d(64), nn.ReLU(),
        *up(64, 32, 0), *up(32, 16, 1), *up(16, 8, 1), nn.Conv2d(8, 3, 3, 1, 1), nn.Tanh(),
    )  # fmt: skip
    dcgan_init(G)
    return G


def critic(width: int, pack: int) -> nn.Module:
    layers: list[nn.Module] = []
    c_in = 3 * pack
    for c in (width, 2 * width, 4 * width):
        layers += [nn.Conv2d(c_in, c, 3, 2, 1), nn.BatchNorm2d(c), nn.LeakyReLU(0.3)]
        c_in = c
    D = nn.Sequential(*layers, nn.Flatten(), nn.Linear(4 * width * 4 * 4, 1))
    dcgan_init(D)
    return D


def packed(x: torch.Tensor, m: int) -> torch.Tensor:
    """[B·m, 3, 28, 28] → [B, 3·m, 28, 28]: m consecutive samples along channels."""
    return x.reshape(x.shape[0] // m, m * x.shape[1], *x.shape[2:])


def modes(G: nn.Module, n: int, seed: int, classifier: Path) -> tuple[int, float]:
    """(modes of 1,000, KL to uniform) of n samples, each channel classified (PacGAN's count)."""
    from sgan_cli.features import class_predictions, load_extractor
    from sgan_cli.metrics import mode_coverage

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # the generator in training mode, as PacGAN's sampler runs it
        x = torch.cat([G(torch.randn(min(500, n - i), Z_DIM, generator=g)) for i in range(0, n, 500)])
    u8 = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    labels, total = class_predictions(load_extractor(f"classifier:{classifier}"), u8, 1000, torch.device("cpu"))
    mc = mode_coverage(labels, total)
    return mc.covered, mc.kl


def train(args: argparse.Namespace) -> list[dict]:
    import torchvision.utils as vutils

    out: Path = args.out
    if (out / "metrics.jsonl").exists():
        raise SystemExit(f"{out} already holds a run (metrics.jsonl): give another --out")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    digits = load_mnist(args.data_root)[: args.limit]
    G, D = generator(), critic(args.width, args.pack)
    opt_g = torch.optim.Adam(G.parameters(), 1e-4, betas=(0.5, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.99))
    bce = nn.BCEWithLogitsLoss()
    B, m = args.batch_size, args.pack
    ones, zeros = torch.ones(B // m, 1), torch.zeros(B // m, 1)
    stops = sorted({s for s in args.eval_at if s < args.steps} | {args.steps})
    rows, t0, train_s = [], time.perf_counter(), 0.0
    for step in range(1, args.steps + 1):
        x = digits[torch.randint(0, len(digits), (B * 3,))].reshape(B, 3, 28, 28)  # 3 fresh digits per image
        z = torch.randn(B, Z_DIM)
        with torch.no_grad():
            fake = G(z)
        loss_d = bce(D(packed(x, m)), ones) + bce(D(packed(fake, m)), zeros)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = bce(D(packed(G(z), m)), ones)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if step in stops:
            train_s += time.perf_counter() - t0
            covered, kl = modes(G, args.samples, 1000 + args.seed, args.classifier)
            row = {"step": step, "modes": covered, "kl": round(kl, 4), "loss_d": round(loss_d.item(), 4),
                   "loss_g": round(loss_g.item(), 4), "train_s": round(train_s, 1)}  # fmt: skip
            rows.append(row)
            with (out / "metrics.jsonl").open("a") as f:
                f.write(json.dumps(row) + "\n")
            with torch.no_grad():
                grid = G(torch.randn(64, Z_DIM, generator=torch.Generator().manual_seed(0)))
            vutils.save_image(grid * 0.5 + 0.5, out / f"step-{step:06d}.png", nrow=8)
            print(json.dumps(row), flush=True)
            t0 = time.perf_counter()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, default=None, help="folder holding MNIST/raw (torchvision layout)")
    ap.add_argument("--classifier", type=Path, default=None, help="a 1-channel MNIST classifier (sgan classifier)")
    ap.add_argument("--out", type=Path, default=None, help="output folder (--smoke: a temp folder by default)")
    ap.add_argument("--steps", type=int, default=10_000, help="generator iterations")
    ap.add_argument("--eval-at", nargs="*", type=int, default=[1000, 2500, 5000], help="also score at these steps")
    ap.add_argument("--samples", type=int, default=10_000, help="samples scored (PacGAN: 26,000)")
    ap.add_argument("--width", type=int, default=2, help="critic width: 2 (¼ of G) or 4 (½ of G)")
    ap.add_argument("--pack", type=int, default=1, help="PacGAN's m: samples the critic reads at once")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N MNIST training images")
    ap.add_argument("--smoke", action="store_true", help="seconds: 2 steps at batch 8, 300 images, 50 samples")
    args = ap.parse_args()
    if args.batch_size % args.pack:
        ap.error(f"--batch-size {args.batch_size} is not a multiple of --pack {args.pack}")
    if not args.smoke:
        if args.data_root is None or args.out is None or args.classifier is None:
            ap.error("--data-root, --classifier and --out are needed")
        train(args)
        return
    with harness.work_folder(None, "reference-pacgan") as tmp:
        args.out = args.out or tmp / "run"
        args.data_root, args.classifier = harness.smoke_mnist(tmp, args.data_root, args.classifier)
        args.batch_size, args.limit, args.steps, args.eval_at, args.samples, args.pack = 8, 300, 2, [1], 50, 2
        rows = train(args)
        assert [r["step"] for r in rows] == [1, 2] and all(1 <= r["modes"] <= 50 for r in rows), rows


if __name__ == "__main__":
    main()
