"""One rule for every number a user gives sgan: finite, in range, checked before any work.

The rule applies wherever a number enters: command-line options (:func:`check_options`,
run by ``handle_errors`` before a command body starts), configuration values from the
dataclass defaults, a recipe, ``--set`` or a flag (:func:`sgan_cli.config.set_value` checks
each against :data:`sgan_cli.config.RANGES`), and configurations read back from files.
A value outside its range is one :class:`~sgan_cli.errors.SganError` that names the option
(or key), the range and the value. Sizes that would not fit in memory are refused by
:func:`check_memory` before the allocation.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from .errors import SganError

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
FRACTION_OPEN = Range(0, 1, lo_open=True, hi_open=True)  # (0, 1)
SEED = Range(0, SEED_MAX)
SIZE = Range(1, 16384)  # image side in pixels
CHANNELS = Range(1, 4)  # gray, gray+alpha, RGB, RGBA
LEARNING_RATE = Range(0, 10, lo_open=True)


def check_number(value: Any, name: str, rng: Range | None, *, where: str | None = None, fix: str | None = None) -> None:
    """Raise SganError unless ``value`` (an int or float; bools and None pass) is finite
    and in ``rng``. ``name`` is the option or key the user wrote."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise SganError(
            f"{name} must be a finite number{'' if rng is None else ' ' + rng.describe()}, got {value}",
            where=where or name,
            fix=fix or f"give {name} a finite value" + ("" if rng is None else f" {rng.describe()}"),
        )
    if isinstance(value, int) and abs(value) > INT64_MAX and (rng is None or rng.hi is None or rng.hi >= INT64_MAX):
        raise SganError(
            f"{name} is too large ({value})",
            where=where or name,
            fix=fix or f"give {name} a value {'' if rng is None else rng.describe() + ' and '}below 2**63",
        )
    if rng is not None and not rng.contains(value):
        raise SganError(
            f"{name} must be {rng.describe()}, got {value}",
            where=where or name,
            fix=fix or f"give {name} a value {rng.describe()}",
        )


# command-line options that are not configuration keys (and those that are, spelled as the
# parameter): "command.param" first, then "param". Every int/float option of every command
# must appear (tests/test_validation.py checks), so a new option cannot skip the rule.
OPTION_RANGES: dict[str, Range] = {
    "seed": SEED,
    "limit": AT_LEAST_1,
    "ref_limit": AT_LEAST_1,
    "image_size": SIZE,
    "batch_size": AT_LEAST_1,
    "atoms": AT_LEAST_1,
    "patch": Range(2, 4096),
    "stride": AT_LEAST_1,
    "sparsity": FRACTION_OPEN,
    "alpha": POSITIVE,
    "max_samples": Range(2, INT64_MAX),
    "minibatch_disc": NON_NEGATIVE,
    "feature_matching": NON_NEGATIVE,
    "ema": Range(0, 1, hi_open=True),
    "steps": AT_LEAST_1,
    "n": AT_LEAST_1,
    "interpolate": Range(2, INT64_MAX),
    "nonzeros": AT_LEAST_1,
    "splits": AT_LEAST_1,
    "kid_subsets": AT_LEAST_1,
    "kid_subset_size": Range(2, INT64_MAX),
    "k": AT_LEAST_1,
    "epochs": AT_LEAST_1,
    "lr": LEARNING_RATE,
}


def option_names(fn: Any) -> dict[str, str]:
    """Parameter name → the option a user types ('--batch-size', '-n'), from Typer annotations."""
    import inspect
    import typing

    names: dict[str, str] = {}
    try:
        hints = typing.get_type_hints(inspect.unwrap(fn), include_extras=True)
    except Exception:
        hints = {}
    for param, hint in hints.items():
        decls: list[str] = []
        for meta in typing.get_args(hint)[1:]:
            default = getattr(meta, "default", None)
            decls = ([default] if isinstance(default, str) and default.startswith("-") else []) + list(
                getattr(meta, "param_decls", ()) or ()
            )
        names[param] = (decls or ["--" + param.replace("_", "-")])[0]  # as the command declares it first
    return names


def check_options(command: str, kwargs: dict[str, Any], names: dict[str, str]) -> None:
    """Every int and float keyword (or list of them) of a command: finite and in its range."""
    for param, value in kwargs.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            rng = OPTION_RANGES.get(f"{command}.{param}", OPTION_RANGES.get(param))
            check_number(v, names.get(param, "--" + param.replace("_", "-")), rng)


def available_memory() -> int:
    """Bytes of memory this process may reasonably use: $SGAN_MAX_MEMORY when set (bytes),
    else the machine's physical memory."""
    env = os.environ.get("SGAN_MAX_MEMORY")
    if env:
        try:
            value = float(env)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value >= 1):
            raise SganError(
                f"SGAN_MAX_MEMORY={env!r} is not a finite, positive number of bytes",
                where="$SGAN_MAX_MEMORY",
                fix="set it to e.g. 8e9, or unset it",
            )
        return int(value)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 16 * 2**30


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def check_memory(nbytes: float, what: str, where: str, fix: str) -> None:
    """Refuse a request that needs more memory than the machine has (see
    :func:`available_memory`), before allocating it."""
    limit = available_memory()
    if not math.isfinite(nbytes) or nbytes > limit:
        raise SganError(
            f"{what} would need about {format_bytes(nbytes)} of memory, more than the {format_bytes(limit)} available",
            where=where,
            fix=fix,
        )


# activations kept per sample, as a multiple of the sample's own float32 size: a rough upper
# bound for the nets here (DCGAN/ResNet feature maps, the critic on real and fake, backward)
ACTIVATION_FACTOR = 64


def check_batch_memory(batch_size: int, n: int, sample_bytes: float, what: str, option: str = "--batch-size") -> None:
    """Refuse a batch (of ``min(batch_size, n)`` samples of ``sample_bytes`` each, times
    :data:`ACTIVATION_FACTOR` for what the nets keep) that cannot fit in memory."""
    b = max(1, min(batch_size, n))
    check_memory(b * sample_bytes * ACTIVATION_FACTOR, f"a batch of {b} {what}", option, f"pass a smaller {option}")
