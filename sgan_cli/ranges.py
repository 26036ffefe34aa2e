"""Every range in one table: what each number sgan reads may be, wherever it enters.

One row per quantity, keyed by name:

* ``section.key`` — a configuration key (:mod:`sgan_cli.config`): defaults, recipes, ``--set``,
  flags and configurations read back from files are checked against it;
* ``command.option`` or ``option`` — a command-line option that sets no configuration key;
* ``file.field`` — a metadata field of an sgan file (:func:`sgan_cli.contracts.meta_int`).

An option or a file field that holds a configuration key's quantity (``learn-dict --atoms``, a
dictionary file's ``patch``) has no row of its own: :data:`SAME_AS` names the key whose row it
reads, so the option, the key and the file can never disagree. The rule that applies a row
(finite, in range, one message naming the option, key or field) is
:func:`sgan_cli.validation.check_number`.
"""

from __future__ import annotations

from dataclasses import dataclass

INT64_MAX = 2**63 - 1
SEED_MAX = 2**32 - 1  # numpy's RandomState (used by scikit-learn) takes seeds below 2**32


@dataclass(frozen=True)
class Range:
    """A closed or open interval; ``None`` ends are unbounded (ints stay within int64)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def contains(self, v: float) -> bool:
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        if self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi):
            return False
        return True

    def describe(self) -> str:
        """'greater than 0', 'at least 1', 'in [0, 1)', 'at most 4096'."""
        lo = None if self.lo is None else _num(self.lo)
        hi = None if self.hi is None or self.hi >= INT64_MAX else _num(self.hi)
        if lo is not None and hi is not None:
            return f"in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"
        if lo is not None:
            return f"{'greater than' if self.lo_open else 'at least'} {lo}"
        if hi is not None:
            return f"{'below' if self.hi_open else 'at most'} {hi}"
        return "finite"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


POSITIVE = Range(0, None, lo_open=True)  # > 0
NON_NEGATIVE = Range(0, None)  # ≥ 0
AT_LEAST_1 = Range(1, INT64_MAX)
COUNT = Range(0, INT64_MAX)  # how many of something, none included
FRACTION = Range(0, 1)  # [0, 1]
FRACTION_OPEN = Range(0, 1, lo_open=True, hi_open=True)  # (0, 1)
DECAY = Range(0, 1, hi_open=True)  # [0, 1): EMA decays, Adam's β, held-out shares
SEED = Range(0, SEED_MAX)
SIZE = Range(1, 16384)  # image side in pixels
CHANNELS = Range(1, 4)  # gray, gray+alpha, RGB, RGBA
LEARNING_RATE = Range(0, 10, lo_open=True)
WIDTH = Range(1, 65536)  # a layer's width, a latent size
ATOMS = Range(1, 2**20)  # atoms of a dictionary
PATCH = Range(2, 4096)  # a patch's side: 1×1 "patches" would code each pixel alone, with no spatial atom
STRIDE = Range(1, int(SIZE.hi))  # between patch positions; a stride of the image side or more gives one position

RANGES: dict[str, Range] = {
    # --- configuration keys: every int and float field of sgan_cli.config (tests/test_validation.py checks) ---
    "data.limit": AT_LEAST_1,
    "data.image_size": SIZE,
    "data.seed": SEED,
    "dict.atoms": ATOMS,
    "dict.patch": PATCH,
    "dict.stride": STRIDE,
    "dict.sparsity": FRACTION_OPEN,
    "dict.alpha": POSITIVE,
    "dict.passes": Range(0, 1e6, lo_open=True),
    "dict.batch_size": AT_LEAST_1,
    "dict.max_samples": Range(2, INT64_MAX),
    "dict.heldout": DECAY,
    "dict.seed": SEED,
    "model.z_dim": WIDTH,
    "model.g_width": WIDTH,
    "model.d_width": WIDTH,
    "model.threshold": NON_NEGATIVE,
    "model.beta": NON_NEGATIVE,
    "model.e_width": WIDTH,
    "model.minibatch_disc": Range(0, 65536),
    "model.mbd_dim": WIDTH,
    "model.pack": Range(1, 64),  # PacGAN packing: samples the critic scores at once
    "model.topk": AT_LEAST_1,
    "model.support_target": FRACTION_OPEN,
    "model.controller_gain": Range(0, 1, lo_open=True),
    "gan.critic_steps": Range(1, 1000),
    "gan.lr_g": LEARNING_RATE,
    "gan.lr_d": LEARNING_RATE,
    "gan.beta1": DECAY,
    "gan.beta2": DECAY,
    "gan.clip": POSITIVE,
    "gan.gp_lambda": NON_NEGATIVE,
    "gan.feature_matching": NON_NEGATIVE,
    "recon.steps": Range(0, 1000),
    "recon.weight": NON_NEGATIVE,
    "recon.kl_weight": NON_NEGATIVE,
    "recon.every": AT_LEAST_1,
    "recon.lr": LEARNING_RATE,
    "train.steps": AT_LEAST_1,
    "train.batch_size": AT_LEAST_1,
    "train.seed": SEED,
    "train.log_every": AT_LEAST_1,
    "train.grid_every": AT_LEAST_1,
    "train.save_every": AT_LEAST_1,
    "train.ema": DECAY,
    "train.eval_every": NON_NEGATIVE,
    "train.eval_samples": Range(2, 10**7),
    # --- command-line options that set no configuration key ---
    "seed": SEED,
    "batch_size": AT_LEAST_1,  # images per batch (sample, encode, score, classifier)
    "sample.n": AT_LEAST_1,
    "sample.interpolate": Range(2, INT64_MAX),
    "encode.nonzeros": AT_LEAST_1,
    "score.ref_limit": AT_LEAST_1,
    "score.splits": AT_LEAST_1,
    "score.kid_subsets": AT_LEAST_1,
    "score.kid_subset_size": Range(2, INT64_MAX),
    "score.k": AT_LEAST_1,
    "classifier.epochs": AT_LEAST_1,
    "classifier.lr": LEARNING_RATE,
    "classifier.width": WIDTH,
    "classifier.feature_dim": WIDTH,
    # --- file metadata fields ---
    "file.channels": CHANNELS,
    "file.step": COUNT,
    "file.world_size": AT_LEAST_1,
    "file.achieved_sparsity": FRACTION,
    "file.n_classes": Range(1, 100_000),
    "file.test_accuracy": FRACTION,
    "file.n_train": COUNT,
    "file.n_test": COUNT,
}

# options and file fields that hold a configuration key's quantity: they read that key's row
SAME_AS: dict[str, str] = {
    "limit": "data.limit",
    "image_size": "data.image_size",
    "atoms": "dict.atoms",
    "patch": "dict.patch",
    "stride": "dict.stride",  # learn-dict's, and encode's patch positions
    "sparsity": "dict.sparsity",
    "alpha": "dict.alpha",  # learn-dict's, and encode's lasso penalty
    "max_samples": "dict.max_samples",
    "minibatch_disc": "model.minibatch_disc",
    "pack": "model.pack",
    "feature_matching": "gan.feature_matching",
    "ema": "train.ema",
    "steps": "train.steps",
    "file.image_size": "data.image_size",
    "file.n_atoms": "dict.atoms",
    "file.patch": "dict.patch",
    "file.stride": "dict.stride",
    "file.dictionary_stride": "dict.stride",
    "file.alpha": "dict.alpha",
    "file.width": "classifier.width",
    "file.feature_dim": "classifier.feature_dim",
}


def range_of(name: str) -> Range | None:
    """The row of ``name`` (through :data:`SAME_AS`); None when the table has none."""
    return RANGES.get(SAME_AS.get(name, name))


def option_range(command: str, param: str) -> Range | None:
    """The row of option ``param`` of ``command`` (its Python name, e.g. "learn_dict", "atoms"):
    ``command.param`` first, then ``param``."""
    return range_of(f"{command}.{param}") or range_of(param)


def field_range(field: str) -> Range:
    """The row of file metadata field ``field``; a field without one is a programming error."""
    rng = range_of(f"file.{field}")
    if rng is None:
        raise KeyError(f"no range for the file metadata field {field!r} in sgan_cli.ranges.RANGES")
    return rng
