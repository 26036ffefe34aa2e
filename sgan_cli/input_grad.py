"""∇ₓ Σᵢ D(xᵢ) for WGAN-GP's penalty, written as a first-order graph in the critic's weights.

The usual way (``autograd.grad(D(x̂).sum(), x̂, create_graph=True)``, then ``backward``)
differentiates twice through the critic. For critics built from linear maps (Linear, Conv2d,
average pooling, reshapes, sums) and piecewise-linear activations (ReLU, LeakyReLU), the
second pass does work whose result is known to be zero: an activation's derivative
σ'(h) is piecewise constant, so ∂σ'(h)/∂θ = 0 almost everywhere, yet autograd still sends
explicit zero gradients back through the whole forward graph of D(x̂) (every convolution's
weight and input gradient, on zeros).

Here the forward on x̂ runs without a graph and keeps only what the pullbacks need (the
pre-activations for the masks, the input shapes); the input gradient is then built from
forward ops — g ← gᵀW for a Linear, ``conv_transpose2d(g, W)`` for a Conv2d,
``leaky_relu_backward(g, h)`` for an activation — so it is differentiable in the weights
and the penalty's backward is a single first-order pass. Same maths as the double backward
(tests compare the parameter gradients with autograd's); the penalty with its backward
runs 1.5–1.8× faster on sgan's critics (``benchmarks/bench_penalty.py``, 2 CPU cores).

Dropout (sgan's :class:`~sgan_cli.paper_nets.SeededDropout`, in Goyal's critic) is linear
once its mask is drawn: the forward draws it, the pullback multiplies by the same mask.
Critics with any other layer (BatchNorm, LayerNorm/GroupNorm, minibatch discrimination,
``nn.Dropout``, a user module) are not traced: :func:`input_gradient` then uses autograd's double backward.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from sgan_cli.critics import (
    Critic,
    DCGANFeatures,
    MLPFeatures,
    PackedFeatures,
    ResBlockDown,
    ResNetFeatures,
    TinyFeatures,
    pack_samples,
)
from sgan_cli.paper_nets import GanzBlauFeatures, GoyalFeatures, SeededDropout

Pullback = Callable[[Tensor], Tensor]  # g = ∂(Σ out)/∂out  ↦  ∂(Σ out)/∂in, graph in the weights


class _Untraceable(Exception):
    """A layer with no first-order input-gradient rule here."""


def _linear(m: nn.Linear, x: Tensor) -> tuple[Tensor, Pullback]:
    # y = x Wᵀ + b  →  ∂/∂x = g W   (g [B, out], W [out, in])
    return m(x), lambda g: g @ m.weight


def _conv2d(m: nn.Conv2d, x: Tensor) -> tuple[Tensor, Pullback]:
    if m.padding_mode != "zeros" or isinstance(m.padding, str):
        raise _Untraceable(m)
    y = m(x)
    size_in = x.shape[-2:]

    def pull(g: Tensor) -> Tensor:
        # the adjoint of a strided conv is the transposed conv with the same weight [C_out, C_in, k, k];
        # output_padding restores input sizes a strided conv rounded down
        out_pad = [
            size_in[d]
            - ((g.shape[-2 + d] - 1) * m.stride[d] - 2 * m.padding[d] + m.dilation[d] * (m.kernel_size[d] - 1) + 1)  # type: ignore[index]
            for d in range(2)
        ]
        return F.conv_transpose2d(g, m.weight, None, m.stride, m.padding, out_pad, m.groups, m.dilation)  # type: ignore[arg-type]

    return y, pull


def _leaky_relu(m: nn.LeakyReLU, x: Tensor) -> tuple[Tensor, Pullback]:
    h = x if not m.inplace else x.clone()  # the pre-activation decides the mask σ'(h) ∈ {slope, 1}
    return m(x), lambda g: torch.ops.aten.leaky_relu_backward(g, h, m.negative_slope, False)


def _relu(m: nn.ReLU, x: Tensor) -> tuple[Tensor, Pullback]:
    h = x if not m.inplace else x.clone()
    return m(x), lambda g: torch.ops.aten.threshold_backward(g, h, 0)


def _avg_pool2d(m: nn.AvgPool2d, x: Tensor) -> tuple[Tensor, Pullback]:
    kernel, pad = list(_pair(m.kernel_size)), list(_pair(m.padding))
    stride = list(_pair(m.stride)) if m.stride else kernel
    y = m(x)
    return y, lambda g: torch.ops.aten.avg_pool2d_backward(
        g, x, kernel, stride, pad, m.ceil_mode, m.count_include_pad, m.divisor_override
    )


def _seeded_dropout(m: SeededDropout, x: Tensor) -> tuple[Tensor, Pullback]:
    # y = x ⊙ mask: linear in x once the mask is drawn, so ∂/∂x = g ⊙ mask (the same mask)
    if not m.active:
        return x, lambda g: g
    mask = m.mask(x)
    return x * mask, lambda g: g * mask


def _flatten(m: nn.Flatten, x: Tensor) -> tuple[Tensor, Pullback]:
    shape = x.shape
    return m(x), lambda g: g.reshape(shape)


def _identity(m: nn.Module, x: Tensor) -> tuple[Tensor, Pullback]:
    return x, lambda g: g


def _sequential(m: nn.Sequential, x: Tensor) -> tuple[Tensor, Pullback]:
    pulls = []
    for child in m:
        x, pull = _trace(child, x)
        pulls.append(pull)

    def pull(g: Tensor) -> Tensor:
        for p in reversed(pulls):
            g = p(g)
        return g

    return x, pull


def _custom(m: nn.Module, x: Tensor) -> tuple[Tensor, Pullback]:
    """sgan's own critic modules (critics.py), by the structure of their ``forward``."""
    if isinstance(
        m, (MLPFeatures, DCGANFeatures, TinyFeatures, GoyalFeatures, GanzBlauFeatures)
    ):  # forward = self.net(x)
        return _trace(m.net, x)
    if isinstance(m, PackedFeatures):  # forward = inner(pack(x)): a reshape, undone on the way back
        y, pull = _trace(m.inner, pack_samples(x, m.m))
        return y, lambda g: pull(g).reshape(x.shape)
    if isinstance(m, ResNetFeatures):  # forward = self.net(x).sum((2, 3))
        y, pull = _trace(m.net, x)
        return y.sum(dim=(2, 3)), lambda g: pull(g[:, :, None, None].expand(y.shape))
    if isinstance(m, ResBlockDown):  # forward = main(x) + skip(x)
        y_main, pull_main = _trace(m.main, x)
        y_skip, pull_skip = _trace(m.skip, x)
        return y_main + y_skip, lambda g: pull_main(g) + pull_skip(g)
    if isinstance(m, Critic) and m.mbd is None:  # forward = head(features(x)).view(-1)
        f, pull_f = _trace(m.features, x)
        s, pull_s = _linear(m.head, f)
        return s.view(-1), lambda g: pull_f(pull_s(g.view(-1, 1)))
    raise _Untraceable(m)


_RULES: dict[type, Callable[..., tuple[Tensor, Pullback]]] = {
    nn.Linear: _linear,
    nn.Conv2d: _conv2d,
    nn.LeakyReLU: _leaky_relu,
    nn.ReLU: _relu,
    nn.AvgPool2d: _avg_pool2d,
    nn.Flatten: _flatten,
    SeededDropout: _seeded_dropout,
    nn.Identity: _identity,
    nn.Sequential: _sequential,
}


def _trace(m: nn.Module, x: Tensor) -> tuple[Tensor, Pullback]:
    rule = _RULES.get(type(m))  # exact types: a subclass may change forward
    return rule(m, x) if rule is not None else _custom(m, x)


_TRACEABLE: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


def traceable(critic: nn.Module, example: Tensor) -> bool:
    """Whether :func:`input_gradient` takes the first-order path for this critic (decided
    once per critic on one sample, or one pack, so an untraceable critic wastes no forward per step)."""
    known = _TRACEABLE.get(critic)
    if known is None:
        # the probe must not move a dropout stream: a resumed run probes again, the run it continues did not
        streams = [(m, m.draws) for m in critic.modules() if isinstance(m, SeededDropout)]
        try:
            with torch.no_grad():
                _trace(critic, example[: getattr(critic, "pack", 1)])
            known = True
        except _Untraceable:
            known = False
        finally:
            for m, draws in streams:
                m.draws = draws
        _TRACEABLE[critic] = known
    return known


def input_gradient(critic: nn.Module, x: Tensor) -> Tensor:
    """∇ₓ Σᵢ D(xᵢ), shape of x [B, …], differentiable in the critic's parameters.

    The first-order construction when every layer has a rule, else autograd's
    ``create_graph`` gradient (one sample's gradient never depends on another's in either,
    as long as the critic treats samples independently; a packed critic, samples of other packs).
    """
    if not traceable(critic, x):
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
        return grad
    with torch.no_grad():  # masks and shapes only: no graph through D(x̂)
        y, pull = _trace(critic, x)
    return pull(torch.ones_like(y))
