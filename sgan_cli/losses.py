"""GAN objectives and the sparse-code penalty.

Critic losses are minimised by the critic, generator losses by the generator; scores are the
critic's raw outputs [B] (logits for ``gan``). Every loss is computed in fp32, whatever
precision the nets ran in (``train.precision``): its inputs are cast first (a no-op for fp32).

| objective | critic loss                                   | generator loss        |
|-----------|-----------------------------------------------|-----------------------|
| gan       | BCE(D(x), 1) + BCE(D(G(z)), 0)                | −log σ(D(G(z))) (non-saturating) |
| wgan      | D(G(z)) − D(x), weights clipped after a step  | −D(G(z))              |
| wgan-gp   | D(G(z)) − D(x) + λ(‖∇D(x̂)‖₂ − 1)²             | −D(G(z))              |
| hinge     | relu(1 − D(x)) + relu(1 + D(G(z)))            | −D(G(z))              |
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sgan_cli.input_grad import input_gradient

OBJECTIVES = ("gan", "wgan", "wgan-gp", "hinge")


def critic_loss(objective: str, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """The critic's loss without the gradient penalty (see :func:`gradient_penalty`)."""
    real_scores, fake_scores = real_scores.float(), fake_scores.float()
    if objective == "gan":
        return F.binary_cross_entropy_with_logits(
            real_scores, torch.ones_like(real_scores)
        ) + F.binary_cross_entropy_with_logits(fake_scores, torch.zeros_like(fake_scores))
    if objective in ("wgan", "wgan-gp"):
        return fake_scores.mean() - real_scores.mean()
    if objective == "hinge":
        return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()
    raise ValueError(f"unknown objective {objective!r}")


def generator_loss(objective: str, fake_scores: Tensor) -> Tensor:
    """The generator's adversarial loss."""
    fake_scores = fake_scores.float()
    if objective == "gan":
        # non-saturating: −log σ(D(G(z))) = BCE(D(G(z)), 1)
        return F.binary_cross_entropy_with_logits(fake_scores, torch.ones_like(fake_scores))
    if objective in ("wgan", "wgan-gp", "hinge"):
        return -fake_scores.mean()
    raise ValueError(f"unknown objective {objective!r}")


def gradient_penalty(
    critic: nn.Module, real: Tensor, fake: Tensor, generator: torch.Generator | None = None, eps: Tensor | None = None
) -> Tensor:
    """WGAN-GP penalty mean_i (‖∇ₓD(x̂_i)‖₂ − 1)² with x̂ = εx + (1 − ε)G(z), ε ~ U[0, 1] per sample.

    The norm is over each sample's *whole flattened* gradient [C·H·W] — taking it per pixel
    (over channels only) is a well-known bug in public code and penalises something else.
    ``eps`` [B] gives ε instead of drawing it from ``generator`` (a rank's share of the
    global batch's ε under torchrun). A packed critic (``critic.pack`` = m, PacGAN) interpolates
    packs: ``eps`` [B/m] holds one ε per pack, and the norm is over each pack's gradient
    [m·C·H·W], the penalty of the packed critic on its own (packed) input. Returns the unweighted
    penalty; the caller multiplies by λ (10 by default). ∇ₓD comes from
    :func:`sgan_cli.input_grad.input_gradient`: a first-order graph for sgan's critics (no double
    backward), autograd's ``create_graph`` gradient for any other critic.
    """
    b = real.shape[0]
    m = getattr(critic, "pack", 1)  # a packed critic (PacGAN): one ε and one norm per pack of m samples
    if eps is None:
        eps = torch.rand(b // m, generator=generator, device=real.device, dtype=real.dtype)
    eps = eps.to(real.device, real.dtype).repeat_interleave(m).view(b, *([1] * (real.dim() - 1)))
    x_hat = eps * real + (1.0 - eps) * fake.detach()
    grad = input_gradient(critic, x_hat)  # [B, C, H, W], differentiable in the critic's weights
    norms = grad.float().reshape(b // m, -1).norm(2, dim=1)  # [B/m]: each pack's whole gradient [m·C·H·W]
    return (norms - 1.0).pow(2).mean()


def clip_weights(critic: nn.Module, clip: float) -> None:
    """WGAN's Lipschitz constraint: every critic parameter clamped to [−c, c] after a step."""
    with torch.no_grad():
        for p in critic.parameters():
            p.clamp_(-clip, clip)


def l1_code_penalty(codes: Tensor | None) -> Tensor:
    """mean|a| over all code entries (Ganz & Blau, Sparse GAN: the β-weighted penalty, unweighted here)."""
    if codes is None:
        return torch.zeros(())
    return codes.float().abs().mean()


def latent_recon_loss(z_hat: Tensor, z: Tensor) -> Tensor:
    """Reconstructor loss of Mahdizadehaghdam et al. 2019, eq. 6: mean_i ‖E(G(z_i)) − z_i‖² / z_dim (per coordinate)."""
    return (z_hat.float() - z.float()).pow(2).mean()


def image_recon_loss(x_hat: Tensor, x: Tensor) -> Tensor:
    """Mahdizadehaghdam et al. 2019, Algorithm 1 line 18: mean_i ‖G(E(x_i)) − x_i‖² / (C·H·W) (per pixel)."""
    return (x_hat.float() - x.float()).pow(2).mean()


def vae_loss(x_hat: Tensor, x: Tensor, mu: Tensor, logvar: Tensor, kl_weight: float = 1.0) -> tuple[Tensor, Tensor]:
    """The VAE loss of Ganz & Blau (Sparse GAN): ‖x − G(z)‖² + KL(q(z|x) ‖ N(0, I)), both per image,
    divided by C·H·W.

    KL(N(μ, σ²) ‖ N(0, I)) = ½ Σ_k (μ_k² + σ_k² − log σ_k² − 1). Dividing both terms by the same
    pixel count keeps the ELBO's balance while the loss scale matches :func:`image_recon_loss`.
    Returns (total, KL per pixel).
    """
    n_pix = x[0].numel()
    x_hat, x, mu, logvar = x_hat.float(), x.float(), mu.float(), logvar.float()
    rec = (x_hat - x).pow(2).flatten(1).sum(1)  # [B]
    kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0).sum(1)  # [B]
    return ((rec + kl_weight * kl) / n_pix).mean(), (kl / n_pix).mean()


def feature_matching_loss(
    real_features: Tensor, fake_features: Tensor, mean: Callable[[Tensor], Tensor] | None = None
) -> Tensor:
    """Feature matching (Kitov, GAN lecture; Salimans et al. 2016): ‖E_x f(x) − E_z f(G(z))‖² over the
    critic's penultimate features f [B, A].

    ``mean`` [B, A] → [A] replaces the batch mean (the global batch's mean under torchrun).
    """
    mean = mean or (lambda t: t.mean(0))
    return (mean(real_features.float()) - mean(fake_features.float())).pow(2).sum()
