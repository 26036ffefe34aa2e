"""The third player of a training iteration: the reconstructor (Mahdizadehaghdam et al.,
*Sparse Generative Adversarial Network*, Algorithm 1) or the VAE encoder (Ganz & Blau, *Sparse
GAN*), and the measure of how far the reconstructor is from the best encoder of the current
generator (``recon_gap``). Every draw comes from the loop's ``torch.Generator`` (or, for the
gap, from one of its own), so a resumed run stays bit-exact.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from . import distributed
from .builders import adam
from .checkpoint import TrainState
from .config import SganConfig
from .losses import image_recon_loss, latent_recon_loss, vae_loss
from .precision import autocast


def reconstructor_phase(
    state: TrainState, cfg: SganConfig, real: Tensor, amp: torch.dtype | None = None
) -> dict[str, float]:
    """The third player, after the generator's adversarial step.

    latent (Mahdizadehaghdam et al., Algorithm 1 lines 14–19): ``recon.steps`` encoder updates
    on ‖E(G(z)) − z‖² over fresh z (G frozen), then one generator update on
    recon.weight·‖G(E(x)) − x‖² over real x with E frozen.
    vae (Ganz & Blau): ``recon.steps`` joint updates of E and G on the VAE loss of real x,
    z = μ + σ·ε.
    """
    G, E, rc = state.generator, state.encoder, cfg.recon
    assert E is not None and state.opt_e is not None
    device, n, B, z_dim = real.device, real.shape[0], cfg.train.batch_size, cfg.model.z_dim
    out: dict[str, float] = {}
    if rc.mode == "latent":
        for _ in range(rc.steps):
            z = distributed.shard(torch.randn(B, z_dim, generator=state.rng)).to(device)
            with autocast(device, amp):
                with torch.no_grad():  # E learns to invert the current G; G is not updated here
                    xg = G(z)
                loss_e = latent_recon_loss(E(xg), z)
            state.opt_e.zero_grad(set_to_none=True)
            loss_e.backward()
            distributed.step(state.opt_e)
            out["recon_e"] = loss_e.item()
        x = real[distributed.shard(torch.randint(0, n, (B,), generator=state.rng)).to(device)]
        with autocast(device, amp):
            with torch.no_grad():  # E frozen: z_x = E*(x) is data for the generator step
                zx = E(x)
            loss_r = image_recon_loss(G(zx), x)
        state.opt_g.zero_grad(set_to_none=True)
        (rc.weight * loss_r).backward()
        distributed.step(state.opt_g)
        out["recon_g"] = loss_r.item()
        return out
    for _ in range(rc.steps):  # vae
        x = real[distributed.shard(torch.randint(0, n, (B,), generator=state.rng)).to(device)]
        with autocast(device, amp):
            mu, logvar = E.stats(x)
            eps = distributed.shard(torch.randn(B, mu.shape[1], generator=state.rng)).to(device)
            x_hat = G(mu.float() + torch.exp(0.5 * logvar.float()) * eps)
            loss, kl = vae_loss(x_hat, x, mu, logvar, rc.kl_weight)
        state.opt_e.zero_grad(set_to_none=True)
        state.opt_g.zero_grad(set_to_none=True)
        (rc.weight * loss).backward()
        distributed.step(state.opt_e)
        distributed.step(state.opt_g)
        out["vae"], out["kl"] = loss.item(), kl.item()
    return out


GAP_STEPS = 25  # extra encoder steps of the copy that measures recon_gap


def reconstructor_gap(
    state: TrainState, cfg: SganConfig, device: torch.device, amp: torch.dtype | None
) -> dict[str, float]:
    """How far the reconstructor is from the best encoder of the current generator, at a log step.

    A copy of E, with a copy of its optimiser state, takes :data:`GAP_STEPS` more encoder steps
    on the frozen G (Mahdizadehaghdam et al. ask for E* ∈ argmin ‖E(G(z)) − z‖², an encoder
    kept near-optimal for the current G). Logged: ``recon_heldout``, ‖E(G(z)) − z‖² of E on
    4·B held-out z, and ``recon_gap``, how much the copy lowered it — near 0 when E keeps up
    with G, large when E lags (E ≡ 0 scores 1). The loop's state is left as it was: E and its
    optimiser untouched, G's BatchNorm buffers restored, the draws from a generator of their
    own (seeded by train.seed and the step), so a resumed run stays bit-exact.
    """
    G, E, rc = state.generator, state.encoder, cfg.recon
    assert E is not None and state.opt_e is not None
    B, z_dim = cfg.train.batch_size, cfg.model.z_dim
    gen = torch.Generator().manual_seed(cfg.train.seed * 1_000_003 + state.step)
    held = distributed.shard(torch.randn(4 * B, z_dim, generator=gen)).to(device)
    buffers = [b.clone() for b in G.buffers()]
    copy_e = copy.deepcopy(E)
    opt = adam(copy_e.parameters(), rc.lr, (0.5, 0.9))
    opt.load_state_dict(copy.deepcopy(state.opt_e.state_dict()))  # load_state_dict would share its tensors

    def error(enc: nn.Module) -> float:
        with torch.no_grad(), autocast(device, amp):
            return float(latent_recon_loss(enc(G(held)), held))

    before = error(copy_e)
    for _ in range(GAP_STEPS):
        z = distributed.shard(torch.randn(B, z_dim, generator=gen)).to(device)
        with autocast(device, amp):
            with torch.no_grad():
                xg = G(z)
            loss = latent_recon_loss(copy_e(xg), z)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        distributed.step(opt)
    after = error(copy_e)
    with torch.no_grad():
        for b, saved in zip(G.buffers(), buffers):
            b.copy_(saved)
    _, (before, after) = distributed.any_rank(False, [before, after])  # the global batch's means
    return {"recon_heldout": before, "recon_gap": before - after}
