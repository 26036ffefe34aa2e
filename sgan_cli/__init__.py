"""sgan: Sparse GANs — generators that emit sparse codes over a learned dictionary.

The command line is ``sgan`` (:mod:`sgan_cli.cli`). As a library::

    import sgan_cli

    d = sgan_cli.learn_dictionary("digits", atoms=64, sparsity=0.1)  # a Dictionary; nothing written
    d.save("dictionary.safetensors")
    cfg = sgan_cli.SganConfig()
    cfg.train.steps = 300
    result = sgan_cli.train(cfg, "runs/digits", dictionary=d)  # a run folder, as `sgan train` writes
    g = sgan_cli.load_generator("runs/digits")
    x = sgan_cli.sample(g, 1000, seed=0)  # float32 [1000, 1, 8, 8] in [−1, 1]
    print(sgan_cli.score(x, "digits", metrics=["fid"], features="classifier:digits-classifier.safetensors"))

Each public name is loaded on first use (from :mod:`sgan_cli.api`, which documents them), so
``import sgan_cli`` and ``sgan --help`` do not import torch. Errors a caller can cause are
:class:`SganError`: what went wrong, where (the argument or configuration key), how to fix it.
"""

from __future__ import annotations

from .version import __version__

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (type checkers read it as such)

__all__ = [
    "Dictionary",
    "Encoded",
    "LoadedGenerator",
    "SganConfig",
    "SganError",
    "TrainResult",
    "__version__",
    "encode",
    "learn_dictionary",
    "load_dictionary",
    "load_generator",
    "sample",
    "score",
    "to_uint8",
    "train",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ loads each name on first use
    from .api import (
        Dictionary,
        Encoded,
        LoadedGenerator,
        SganConfig,
        SganError,
        TrainResult,
        encode,
        learn_dictionary,
        load_dictionary,
        load_generator,
        sample,
        score,
        to_uint8,
        train,
    )


def __getattr__(name: str) -> object:
    if name not in __all__:
        raise AttributeError(f"module 'sgan_cli' has no attribute {name!r}")
    from . import api

    value = getattr(api, name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
