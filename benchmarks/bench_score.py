"""sgan score's feature extraction against torchmetrics, same extractor and batch size, one run.

Two cases, each timed as "images → features and their float64 statistics":
  classifier  sgan's extract() + feature_stats() vs torchmetrics FrechetInceptionDistance
              .update() with the same classifier (penultimate layer) as its feature module;
              both in the classifier's float64 (what sgan runs), and in float32 for reference.
  inception   sgan's FID Inception port vs torchmetrics' (torch-fidelity's
              FeatureExtractorInceptionV3), both loading the same weights file, on a few
              images (Inception at 299×299 is heavy on a CPU).
Agreement is reported too: FID between two halves of the images under each implementation.

    python benchmarks/bench_score.py                                   # digits, random Inception weights
    python benchmarks/bench_score.py --mnist-root ../shared/data/mnist-5k --classifier mnist-clf.safetensors
    python benchmarks/bench_score.py --weights pt_inception-2015-12-05-6726825d.pth

    python benchmarks/bench_score.py --smoke                           # seconds: 200 digits, 4 Inception images

Without --weights, a random state dict in the published layout is written to a temp file:
throughput does not depend on the values. Results: benchmarks/results/score.json (``--out``;
none with ``--smoke`` unless given).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from sgan_cli.classifier import ClassifierConfig, train_from_data
from sgan_cli.config import DataConfig
from sgan_cli.data import load_data
from sgan_cli.features import extract, load_extractor
from sgan_cli.metrics import feature_stats, frechet_distance

HERE = Path(__file__).resolve().parent


def race(a, b, repeats: int, warm_up: bool = True) -> tuple[float, float, object, object]:
    """Minimum wall times of a() and b(), called alternately ``repeats`` (≥ 1) times after a
    warm-up each (unless not ``warm_up``), and what each returned last.

    Alternating keeps a busy machine's load from favouring whichever side ran second.
    """
    if warm_up:
        a(), b()
    ta, tb, last = [], [], [None, None]
    for _ in range(repeats):
        for i, (fn, times) in enumerate(((a, ta), (b, tb))):
            t = time.perf_counter()
            last[i] = fn()
            times.append(time.perf_counter() - t)
    return min(ta), min(tb), last[0], last[1]


class Penultimate(torch.nn.Module):
    """An sgan extractor's net as torchmetrics' feature module: one output, the features."""

    def __init__(self, net: torch.nn.Module, dim: int) -> None:
        super().__init__()
        self.net, self.num_features = net, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0]


def torchmetrics_fid(feature, images: torch.Tensor, batch: int, **kw):
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=feature, **kw)
    half = images.shape[0] // 2
    for chunk in images[:half].split(batch):
        metric.update(chunk, real=True)
    for chunk in images[half:].split(batch):
        metric.update(chunk, real=False)
    return metric


def case_classifier(images: torch.Tensor, clf_path: Path, batch: int, repeats: int, warm_up: bool = True) -> list[dict]:
    rows = []
    ext = load_extractor(f"classifier:{clf_path}")
    device = torch.device("cpu")
    half = images.shape[0] // 2
    for dtype in (torch.float64, torch.float32):
        ext.dtype = dtype
        ext.net.to(dtype)

        def sgan_run():
            feats = extract(ext, images, batch, device).features
            return feature_stats(feats[:half]), feature_stats(feats[half:])

        def tm_run():
            with torch.inference_mode():
                return torchmetrics_fid(Penultimate(ext.net, ext.dim), images, batch)

        t_sgan, t_tm, (a, b), tm_metric = race(sgan_run, tm_run, repeats, warm_up)
        rows.append(
            {
                "case": f"classifier {str(dtype).replace('torch.', '')}",
                "n": int(images.shape[0]),
                "batch": batch,
                "sgan_img_s": images.shape[0] / t_sgan,
                "torchmetrics_img_s": images.shape[0] / t_tm,
                "ratio": t_tm / t_sgan,
                "fid_sgan": frechet_distance(b, a),
                "fid_torchmetrics": float(tm_metric.compute()),
            }
        )
    return rows


def random_inception_weights(folder: Path) -> Path:
    """A state dict in the published layout (torchvision's FID-shaped Inception-v3), random values."""
    import torchvision

    torch.manual_seed(0)
    state = torchvision.models.inception_v3(
        weights=None, aux_logits=False, num_classes=1008, init_weights=False
    ).state_dict()
    for key, t in state.items():  # He-scaled convs and spread BN statistics: activations stay O(1) through 94 layers
        if key.endswith("conv.weight"):
            state[key] = torch.randn_like(t) * (2.0 / t[0].numel()) ** 0.5
        elif key.endswith(("bn.running_mean", "bn.bias")):
            state[key] = torch.randn_like(t) * 0.1
        elif key.endswith("bn.running_var"):
            state[key] = torch.rand_like(t) + 0.5
    path = folder / "random-inception.pth"
    torch.save(state, path)
    return path


def case_inception(
    images: torch.Tensor, weights: Path, custom: bool, batch: int, repeats: int, warm_up: bool = True
) -> dict:
    from torchmetrics.image.fid import FrechetInceptionDistance

    ext = load_extractor("inception", weights=str(weights), custom_weights=custom)
    device = torch.device("cpu")
    rgb = images.expand(-1, 3, -1, -1).contiguous() if images.shape[1] == 1 else images  # torchmetrics reads RGB only
    half = rgb.shape[0] // 2

    def sgan_run():
        feats = extract(ext, rgb, batch, device).features
        return feature_stats(feats[:half]), feature_stats(feats[half:])

    # model construction is excluded on both sides: time only the passes over the images
    # antialias=False: torchmetrics then resizes like TF1 (torch-fidelity's function), as sgan does;
    # its default (True) uses torch's antialiased bilinear resize, which is not the standard extractor
    tm_metric = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(weights), antialias=False)

    def tm_update():
        tm_metric.reset()
        with torch.inference_mode():
            for chunk in rgb[:half].split(batch):
                tm_metric.update(chunk, real=True)
            for chunk in rgb[half:].split(batch):
                tm_metric.update(chunk, real=False)
        return tm_metric

    t_sgan, t_tm, (a, b), _ = race(sgan_run, tm_update, repeats, warm_up)  # tm_metric holds the last update
    from torchmetrics.image.fid import _compute_fid

    return {
        "case": "inception float32",
        "n": int(rgb.shape[0]),
        "batch": batch,
        "weights": weights.name,
        "sgan_img_s": rgb.shape[0] / t_sgan,
        "torchmetrics_img_s": rgb.shape[0] / t_tm,
        "ratio": t_tm / t_sgan,
        "fid_sgan": frechet_distance(b, a),
        "fid_torchmetrics": float(tm_metric.compute()),
        # torchmetrics' formula (eigenvalues of the non-symmetric Σ₁Σ₂) on sgan's features: separates formula from
        # features
        "fid_torchmetrics_formula_sgan_features": float(_compute_fid(b.mean, b.cov, a.mean, a.cov)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist-root", type=Path, help="score mnist-5k test images (default: digits)")
    ap.add_argument("--classifier", type=Path, help="sgan.classifier file (default: train a quick one)")
    ap.add_argument("--weights", type=Path, help="Inception weights (default: random weights in the published layout)")
    ap.add_argument("--n-inception", type=int, default=100, help="images for the Inception case")
    ap.add_argument("--batch", type=int, default=50, help="batch size for both sides (pytorch-fid's default 50)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-inception", action="store_true")
    ap.add_argument(
        "--out", type=Path, default=None, help="JSON results (default results/score.json; none with --smoke)"
    )
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="seconds: 200 digits, a one-epoch classifier of 300, 4 Inception images, once without warm-up",
    )
    args = ap.parse_args()
    epochs = 2
    if args.smoke:  # the thread count as the caller set it (OMP_NUM_THREADS)
        args.n_inception, args.repeats, args.batch, epochs = 4, 1, 2, 1
    else:
        torch.set_num_threads(os.cpu_count() or 1)
        if args.out is None:
            args.out = HERE / "results" / "score.json"
    cfg = (
        DataConfig(name="mnist", root=str(args.mnist_root), split="test", download=False)
        if args.mnist_root
        else DataConfig(name="digits", split="test")
    )
    data = load_data(cfg)
    images = data.images[:200] if args.smoke else data.images
    with tempfile.TemporaryDirectory() as tmp:
        clf = args.classifier
        if clf is None:
            from sgan_cli.classifier import save_classifier

            limit = 300 if args.smoke else None
            train = load_data(DataConfig(name=cfg.name, root=cfg.root, split="train", download=False, limit=limit))
            net, info, _ = train_from_data(train, data, ClassifierConfig(epochs=epochs))
            clf = Path(tmp) / "clf.safetensors"
            save_classifier(clf, net, info, {})
        warm_up = not args.smoke
        rows = case_classifier(images, clf, args.batch, args.repeats, warm_up)
        if not args.skip_inception:
            weights = args.weights or random_inception_weights(Path(tmp))
            rows.append(
                case_inception(
                    images[: args.n_inception], weights, args.weights is None, args.batch, args.repeats, warm_up
                )
            )

    print(
        f"{'case':<20} {'N':>6} {'batch':>5} {'sgan img/s':>11} {'torchmetrics img/s':>19} "
        f"{'speed-up':>8} {'FID sgan':>12} {'FID torchmetrics':>17}"
    )
    for r in rows:
        print(
            f"{r['case']:<20} {r['n']:>6} {r['batch']:>5} {r['sgan_img_s']:>11.1f} {r['torchmetrics_img_s']:>19.1f} "
            f"{r['ratio']:>7.2f}× {r['fid_sgan']:>12.6g} {r['fid_torchmetrics']:>17.6g}"
        )
    for r in rows:
        if "fid_torchmetrics_formula_sgan_features" in r:
            print(
                f"{r['case']}: torchmetrics' FID formula on sgan's features "
                f"gives {r['fid_torchmetrics_formula_sgan_features']:.6g}"
            )
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "data": cfg.name,
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
