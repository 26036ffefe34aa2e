"""Evaluation during training: IS, FID, precision/recall and modes of a generator, every N steps.

As StyleGAN2-ADA's ``--metrics`` and StudioGAN do, a training run can score its generator
while it trains: the reference (the run's own training images) is extracted once, then every
``train.eval_every`` steps ``train.eval_samples`` images are generated from fixed latents (the
latents ``sgan sample --seed`` draws; ``sgan sample`` runs G on its own fixed blocks, so its
images of the same generator agree with the evaluation's up to float rounding in rare pixels)
and scored with the features ``sgan score --features`` takes
(``classifier:FILE`` or ``inception``). Evaluation draws no random numbers from the training
streams and leaves the generator's mode as it found it, so a run with evaluation trains
bit-identically to one without.

Metrics (sgan_cli.metrics, as ``sgan score`` computes them): Inception Score over 10 splits
(Salimans et al. 2016), FID (Heusel et al. 2017) against the reference's statistics,
precision/recall with k = 3 (Kynkäänniemi et al. 2019), and, with a classifier, the classes hit
and the KL divergence of their histogram to the uniform one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .features import Extractor, Features, check_images, class_predictions, extract, load_extractor
from .images import to_uint8
from .metrics import (
    FeatureStats,
    canonical_order,
    feature_stats,
    frechet_distance,
    inception_score,
    mode_coverage,
    precision_recall,
)
from .sampling import draw_latents

EVAL_SEED = 0  # the latents of every evaluation: sgan sample --seed 0's first eval_samples
GENERATE_BATCH = 500


@dataclass
class Evaluator:
    """Scores a generator against a fixed reference (see the module docstring).

    ``reference`` holds the reference's features; ``stats`` their mean and covariance;
    ``setup_s`` the seconds spent building it (loading the extractor, extracting the reference).
    """

    extractor: Extractor
    reference: Features
    stats: FeatureStats
    n_samples: int
    device: torch.device
    batch_size: int
    setup_s: float

    def generate(self, generator: nn.Module, z_dim: int) -> Tensor:
        """``n_samples`` images of ``generator`` from the fixed latents → uint8 [N, C, H, W] on the CPU."""
        was_training = generator.training
        generator.eval()
        out = []
        try:
            with torch.inference_mode():
                for lo in range(0, self.n_samples, GENERATE_BATCH):
                    hi = min(self.n_samples, lo + GENERATE_BATCH)
                    z = draw_latents(EVAL_SEED, lo, hi, z_dim).to(self.device)
                    out.append(to_uint8(generator(z).float()).cpu())
        finally:
            generator.train(was_training)
        return torch.cat(out)

    def __call__(self, generator: nn.Module, z_dim: int) -> dict[str, float]:
        """Generate and score: {"inception", "inception_std", "fid", "precision", "recall",
        ["modes", "modes_kl"], "eval_s"} (modes only with a classifier)."""
        t0 = time.perf_counter()
        images = self.generate(generator, z_dim)
        return self.score(images) | {"eval_s": time.perf_counter() - t0}

    def score(self, images: Tensor) -> dict[str, float]:
        """The metrics of uint8 images [N, C, H, W] against the reference (in ``sgan score``'s
        canonical order, so the result does not depend on the order of the images)."""
        images = images[canonical_order(images)]
        feats = extract(self.extractor, images, self.batch_size, self.device)
        s = inception_score(feats.logits, 10, EVAL_SEED)
        pr = precision_recall(self.reference.features, feats.features, 3)
        out = {
            "inception": s.mean,
            "inception_std": s.std,
            "fid": frechet_distance(feature_stats(feats.features), self.stats),
            "precision": pr.precision,
            "recall": pr.recall,
        }
        if self.extractor.kind == "classifier":
            modes, n_modes = class_predictions(self.extractor, images, self.batch_size, self.device, feats.logits)
            mc = mode_coverage(modes, n_modes)
            out |= {"modes": float(mc.covered), "modes_kl": mc.kl}
        return out


def make_evaluator(
    spec: str, reference: Tensor, n_samples: int, device: torch.device, download: bool = True
) -> Evaluator:
    """An evaluator for features ``spec`` ("classifier:FILE" or "inception") against uint8
    reference images [N, C, H, W] (the run's training images). Raises SganError when the
    extractor cannot be loaded or does not fit the images (channels, size)."""
    t0 = time.perf_counter()
    extractor = load_extractor(spec, download=download)
    check_images(extractor, reference, "reference")
    batch = 500 if extractor.kind == "classifier" else 50
    feats = extract(extractor, reference, batch, device)
    return Evaluator(
        extractor, feats, feature_stats(feats.features), n_samples, device, batch, time.perf_counter() - t0
    )
