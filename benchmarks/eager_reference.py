"""A straightforward eager PyTorch training loop: the baseline of ``bench_train.py``.

The same nets, losses, optimisers, batch size and random draws (in the same order, from the
same generator) as :func:`sgan_cli.training.train_steps`, written the plain way most GAN
code is: the generator's forward keeps its graph during critic steps (and the output is
detached), the critic scores real and fake images in two calls, the critic's weights keep
``requires_grad`` during the generator step, the gradient penalty is autograd's
``create_graph`` gradient (a double backward), optimisers use PyTorch's default
(per-tensor) implementation, and the nets keep PyTorch's default NCHW layout and
``nn.Dropout`` (:func:`plain_nets`; ``bench_train.py`` applies it). With ``amp`` the forward
passes run under ``torch.autocast`` (bf16 mixed precision, as sgan's ``train.precision=bf16``;
losses from fp32 scores as sgan's). ``tests/test_training.py`` checks both loops give the
same losses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sgan_cli.builders import OBJECTIVE_DEFAULTS, resolve_gan
from sgan_cli.checkpoint import TrainState
from sgan_cli.config import SganConfig
from sgan_cli.paper_nets import SeededDropout


def plain_nets(state: TrainState) -> None:
    """The nets as plain PyTorch code has them: NCHW layout, ``nn.Dropout`` (PyTorch's global
    generator) where sgan has its seeded dropout."""
    for module in state.modules().values():
        module.to(memory_format=torch.contiguous_format)
        for parent in module.modules():
            for name, child in parent.named_children():
                if isinstance(child, SeededDropout):
                    setattr(parent, name, nn.Dropout(child.p))


def plain_optimizers(state: TrainState, cfg: SganConfig) -> dict[str, torch.optim.Optimizer]:
    """Fresh default-implementation optimisers for the state's nets (hyper-parameters as sgan's)."""
    gan = resolve_gan(cfg.gan)
    kind = OBJECTIVE_DEFAULTS[gan.objective][1]

    def make(params, lr: float) -> torch.optim.Optimizer:
        if kind == "rmsprop":
            return torch.optim.RMSprop(params, lr=lr, foreach=False)
        return torch.optim.Adam(params, lr=lr, betas=gan.betas, foreach=False)

    opts = {"g": make(state.generator.parameters(), gan.lr_g), "d": make(state.critic.parameters(), gan.lr_d)}
    if state.encoder is not None:
        opts["e"] = torch.optim.Adam(state.encoder.parameters(), lr=cfg.recon.lr, betas=(0.5, 0.9), foreach=False)
    return opts


def eager_steps(
    state: TrainState,
    cfg: SganConfig,
    real: Tensor,
    steps: int,
    opts: dict[str, torch.optim.Optimizer],
    amp: torch.dtype | None = None,
) -> list[dict[str, float]]:
    """``steps`` generator iterations (wgan-gp / gan / hinge / wgan, optional latent
    reconstructor or VAE encoder), forward passes under autocast to ``amp`` when given;
    returns each iteration's losses."""
    gan = resolve_gan(cfg.gan)
    G, D, E, rng = state.generator, state.critic, state.encoder, state.rng
    n, B, z_dim, dev = real.shape[0], cfg.train.batch_size, cfg.model.z_dim, real.device

    def autocast() -> torch.autocast:
        return torch.autocast(dev.type, dtype=amp or torch.bfloat16, enabled=amp is not None)

    log = []
    for _ in range(steps):
        for _ in range(gan.critic_steps):
            x = real[torch.randint(0, n, (B,), generator=rng).to(dev)]
            z = torch.randn(B, z_dim, generator=rng).to(dev)
            with autocast():
                fake = G(z).detach()
                d_real, d_fake = D(x).float(), D(fake).float()
            if gan.objective == "gan":
                loss_d = F.binary_cross_entropy_with_logits(
                    d_real, torch.ones_like(d_real)
                ) + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
            elif gan.objective == "hinge":
                loss_d = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
            else:
                loss_d = d_fake.mean() - d_real.mean()
            if gan.objective == "wgan-gp":
                eps = torch.rand(B, 1, 1, 1, generator=rng).to(dev)
                x_hat = (eps * x + (1 - eps) * fake).requires_grad_(True)
                with autocast():
                    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
                loss_d = loss_d + gan.gp_lambda * ((grad.float().reshape(B, -1).norm(dim=1) - 1) ** 2).mean()
            opts["d"].zero_grad()
            loss_d.backward()
            opts["d"].step()
            if gan.objective == "wgan":
                for p in D.parameters():
                    p.data.clamp_(-gan.clip, gan.clip)
        z = torch.randn(B, z_dim, generator=rng).to(dev)
        with autocast():
            fake, codes = G.forward_codes(z)
            scores = D(fake).float()
        loss_g = (
            F.binary_cross_entropy_with_logits(scores, torch.ones_like(scores))
            if gan.objective == "gan"
            else -scores.mean()
        )
        l1 = codes.float().abs().mean() if codes is not None else torch.zeros((), device=dev)
        opts["g"].zero_grad()
        (loss_g + cfg.model.beta * l1).backward()
        opts["g"].step()
        if state.controller is not None:  # the support controller's λ step (model.sparsity "controller")
            state.controller.update(float((codes != 0).float().mean()))
        entry = {"loss_d": loss_d.item(), "loss_g": loss_g.item()}
        if E is not None and cfg.recon.mode == "vae":  # E and G together on the VAE loss of real images
            for _ in range(cfg.recon.steps):
                x = real[torch.randint(0, n, (B,), generator=rng).to(dev)]
                with autocast():
                    mu, logvar = E.stats(x)
                    mu, logvar = mu.float(), logvar.float()
                    eps = torch.randn(B, mu.shape[1], generator=rng).to(dev)
                    x_hat = G(mu + torch.exp(0.5 * logvar) * eps).float()
                rec = (x_hat - x).pow(2).flatten(1).sum(1)
                kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(1)
                loss_v = ((rec + cfg.recon.kl_weight * kl) / x[0].numel()).mean()
                opts["e"].zero_grad()
                opts["g"].zero_grad()
                (cfg.recon.weight * loss_v).backward()
                opts["e"].step()
                opts["g"].step()
                entry["vae"] = loss_v.item()
        elif E is not None:
            for _ in range(cfg.recon.steps):
                z = torch.randn(B, z_dim, generator=rng).to(dev)
                with autocast():
                    z_hat = E(G(z).detach()).float()
                loss_e = ((z_hat - z) ** 2).mean()
                opts["e"].zero_grad()
                loss_e.backward()
                opts["e"].step()
                entry["recon_e"] = loss_e.item()
            x = real[torch.randint(0, n, (B,), generator=rng).to(dev)]
            with autocast():
                x_rec = G(E(x).detach()).float()
            loss_r = ((x_rec - x) ** 2).mean()
            opts["g"].zero_grad()
            (cfg.recon.weight * loss_r).backward()
            opts["g"].step()
            entry["recon_g"] = loss_r.item()
        log.append(entry)
    return log
