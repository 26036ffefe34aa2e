"""One rule for every number a user gives sgan: finite, in range, checked before any work.

The rule applies wherever a number enters: command-line options (:func:`check_options`,
run by ``handle_errors`` before a command body starts), configuration values from the
dataclass defaults, a recipe, ``--set`` or a flag (:func:`sgan_cli.config.set_value`),
configurations and metadata read back from files. Every range comes from the one table,
:data:`sgan_cli.ranges.RANGES`. A value outside its range is one
:class:`~sgan_cli.errors.SganError` that names the option (or key, or field), the range and
the value. Sizes that would not fit in memory are refused by :func:`check_memory` before
the allocation.
"""

from __future__ import annotations

import math
import os
from typing import Any

from .errors import SganError
from .ranges import INT64_MAX, Range, option_range


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
            rng = option_range(command, param)
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


def check_batch_memory(batch_size: int, n: int, sample_bytes: float, what: str, option: str = "batch_size") -> None:
    """Refuse a batch (of ``min(batch_size, n)`` samples of ``sample_bytes`` each, times
    :data:`ACTIVATION_FACTOR` for what the nets keep) that cannot fit in memory."""
    b = max(1, min(batch_size, n))
    check_memory(b * sample_bytes * ACTIVATION_FACTOR, f"a batch of {b} {what}", option, f"pass a smaller {option}")
