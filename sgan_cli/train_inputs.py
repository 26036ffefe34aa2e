"""What ``sgan train`` trains on, decided before any work and said in one line.

The pipeline ``sgan learn-dict mnist`` then ``sgan train`` means a sparse generator over the
dictionary just learned, on the data it was learned from. So, for a new run:

* ``--dict FILE`` (or a recipe's ``train.dict``) names the dictionary; ``--dict none`` asks for
  the dense baseline;
* without either, and without a recipe, ``./dictionary.safetensors`` (learn-dict's default
  output) is used when it exists — unless the data named on the command line is not what it
  was learned on;
* the data (name, root, split, image size) comes from the dictionary's record of what it
  was learned on, key by key, unless given on the command line, by ``--set`` or by the
  recipe (a different data set given there keeps the record out altogether).

A recipe describes a whole experiment: it names its dictionary or trains dense, so the
``./dictionary.safetensors`` default does not apply under ``--recipe``. A resumed run keeps
its own configuration and is not decided here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import DataConfig, SganConfig, section_from_file
from .contracts import load_dictionary
from .data import _TORCHVISION, DATASET_NAMES, _has_files, default_root, locate_root
from .errors import SganError

DEFAULT_DICTIONARY = "dictionary.safetensors"  # learn-dict's default --out
DENSE = "none"  # --dict none: the dense baseline even where ./dictionary.safetensors exists
DATA_KEYS = ("name", "root", "split", "image_size")  # what the dictionary's record decides


@dataclass
class InputChoice:
    """What :func:`choose_inputs` decided."""

    dictionary: str | None  # the dictionary file, None for the dense baseline
    line: str  # the one line the command prints up front
    from_record: tuple[str, ...] = ()  # data keys taken from the dictionary's record


def choose_inputs(cfg: SganConfig, given: set[str], recipe: bool) -> InputChoice:
    """Settle ``cfg.train.dict`` and the data keys (in place) per the module doc. ``given``:
    the dotted keys the user set (flags, ``--set``, the recipe's keys); ``recipe``: whether a
    recipe was given. Raises SganError when the dictionary file cannot be read."""
    if cfg.train.dict is not None and cfg.train.dict.strip().lower() == DENSE:
        cfg.train.dict = None
        return InputChoice(None, "dense baseline (--dict none): the generator paints pixels")
    found_here = False
    if cfg.train.dict is None and "train.dict" not in given and not recipe and Path(DEFAULT_DICTIONARY).is_file():
        cfg.train.dict, found_here = DEFAULT_DICTIONARY, True
    if cfg.train.dict is None:
        why = (
            "the recipe names no dictionary"
            if recipe
            else f"no --dict, and no {DEFAULT_DICTIONARY} in this folder"
            if "train.dict" not in given
            else "no dictionary"
        )
        return InputChoice(
            None,
            f"dense baseline ({why}): the generator paints pixels; for a sparse one, "
            "learn a dictionary first (sgan learn-dict DATA) or pass --dict FILE",
        )
    path = Path(cfg.train.dict)
    if not path.is_file():  # reported by --dry-run, refused by the run with the usual message
        return InputChoice(cfg.train.dict, f"sparse generator over {cfg.train.dict} (not there yet)")
    d = load_dictionary(path)
    record = _data_record(d.file.config, path)
    taken: tuple[str, ...] = ()
    if record is not None and "data.name" in given and cfg.data.name != record.name:
        if found_here:  # learned on other data than the user asks for: not silently swapped in
            cfg.train.dict = None
            return InputChoice(
                None,
                f"dense baseline: {DEFAULT_DICTIONARY} in this folder was learned on {record.name}, not "
                f"{cfg.data.name}; for a sparse generator, learn one on {cfg.data.name} "
                f"(sgan learn-dict {cfg.data.name} --out FILE) and pass --dict FILE",
            )
    elif record is not None:
        taken = tuple(k for k in DATA_KEYS if f"data.{k}" not in given and getattr(cfg.data, k) != getattr(record, k))
        for key in taken:
            setattr(cfg.data, key, getattr(record, key))
    side = cfg.data.image_size or d.image_size
    atoms = f"{d.n_atoms} atoms" + ("" if d.patch is None else f" of {d.patch}×{d.patch} patches")
    line = f"sparse generator over {cfg.train.dict} ({cfg.data.name}, {side}×{side}, {atoms})"
    if taken:
        line += f"; data as the dictionary was learned: {_data_words(cfg.data)}"
    if found_here:
        line += f"; found in this folder (--dict {DENSE} for the dense baseline)"
    return InputChoice(cfg.train.dict, line, taken)


def _data_record(config: Any, path: Path) -> DataConfig | None:
    """The data section a dictionary file recorded (learn-dict writes it), or None."""
    if not isinstance(config, dict) or not isinstance(config.get("data"), dict):
        return None
    return section_from_file(config, "data", DataConfig, path)


def _data_words(data: DataConfig) -> str:
    words = [data.name, f"{data.split} split"]
    if data.root:
        words.append(f"--data-root {data.root}")
    if data.image_size:
        words.append(f"--image-size {data.image_size}")
    return ", ".join(words)


def missing_inputs(cfg: SganConfig) -> list[str]:
    """What a new run of ``cfg`` needs that is not on disk yet, one sentence each with what to
    do (``sgan train --dry-run``): the dictionary file, a data folder or samples file, and a
    torchvision data set that the run would first download."""
    missing = []
    if cfg.train.dict is not None and not Path(cfg.train.dict).is_file():
        missing.append(
            f"the dictionary {cfg.train.dict} does not exist: make it with sgan learn-dict "
            f"(with the same recipe, --out {cfg.train.dict}) or pass --dict FILE"
        )
    name = cfg.data.name
    source = "mnist" if name == "stacked-mnist" else name
    if source in _TORCHVISION:
        root = Path(cfg.data.root).expanduser() if cfg.data.root else default_root()
        try:
            located = locate_root(source, root)
        except SganError as exc:
            missing.append(exc.message)
        else:
            sub, files = _TORCHVISION[source][1], _TORCHVISION[source][2]
            if not _has_files(located / sub, files):
                missing.append(
                    f"the {source} data set is not in {located / sub}: the run downloads it first (with network "
                    f"access); to fetch it now, or see what it needs offline: sgan data {name} --data-root {root}"
                )
    elif name not in DATASET_NAMES and not Path(name).exists():
        missing.append(f"the data {name} does not exist (a folder of images or a samples.safetensors file)")
    return missing
