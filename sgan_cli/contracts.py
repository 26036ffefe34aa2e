"""File contracts (docs/files.md): every file sgan writes is safetensors with typed metadata.

Metadata (str → str) always holds ``kind``, ``schema``, ``sgan_version``, ``config`` (the
resolved configuration as JSON) and ``lineage`` (JSON: content hashes of the files this one
derives from, e.g. ``{"dictionary": "sha256:…"}``), plus kind-specific fields. Readers check
kind, schema and tensor shapes before use; writes are atomic (temp file + rename) and never
overwrite an existing file unless asked to.

Length: one contract, one module. The write protocol (:func:`write_file`), the read protocol
(:func:`read_file`: its checks in the order docs/files.md lists them), the metadata field
checks and the kinds several modules read (dictionary, checkpoint, samples, latents) are the
rules docs/files.md states; kept together, every rule of every shared kind is read in one
place, and a kind read by one module only is declared beside that reader instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SganError, printable
from .outputs import (
    AtomicGroup,
    _file_in_the_way,
    atomic_write,
    check_folder_writable,
    remove_stale_temps,
)
from .ranges import Range, field_range
from .schemas import CONFIG_KEYS, OLDER_SCHEMAS, SCHEMAS, unknown_config_keys
from .validation import check_number
from .version import __version__

_RESERVED = ("kind", "schema", "sgan_version", "config", "lineage")


@dataclass
class SganFile:
    """A validated sgan file: its tensors and its metadata, decoded."""

    path: Path
    kind: str
    schema: int
    tensors: dict[str, Any]  # name → torch.Tensor
    config: dict[str, Any]
    lineage: dict[str, str]
    meta: dict[str, str] = field(default_factory=dict)  # the kind-specific fields
    sgan_version: str = ""


def content_hash(tensors: Mapping[str, Any]) -> str:
    """sha256 over tensor names, dtypes, shapes and bytes, in name order: a file's identity.

    Independent of metadata, so the same atoms written twice hash the same, and lineage
    survives re-saving with a different config.
    """
    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        t: torch.Tensor = tensors[name].detach().contiguous().cpu()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "sha256:" + h.hexdigest()


def check_writable(path: Path, force: bool) -> None:
    """Refuse to replace an existing output unless ``force``, to write inside a file, or to write
    into a folder sgan cannot write to; called before long work starts. Removes temp files of
    ``path`` that a killed sgan left behind."""
    blocker = _file_in_the_way(path.parent)
    if blocker is not None:
        raise SganError(
            f"cannot write {path}: {blocker} is a file, not a folder",
            where=str(path),
            fix="choose an output path that is not inside a file",
        )
    if path.exists() and not force:
        raise SganError(
            f"the output file {path} already exists",
            where=str(path),
            fix="pass --force to overwrite it, or choose another path with --out",
        )
    if path.exists() and path.is_dir():
        raise SganError(f"the output path {path} is a folder", where=str(path), fix="give a file name with --out")
    check_folder_writable(path.parent)
    remove_stale_temps(path.parent, path.name)


def written_by(kind: str) -> str:
    """The version stamp of a file that is not safetensors (``config.yaml``): the sgan version
    and the schema of the ``kind`` it goes with."""
    return f"written by sgan {__version__}, {kind} schema {SCHEMAS[kind]}"


def atomic_write_bytes(
    path: Path, write: Callable[[Path], None], group: AtomicGroup | None = None, *, companion: bool = False
) -> None:
    """Call ``write(tmp)`` on a temp file beside ``path``, then rename it into place (at the end
    of ``group`` when given; ``companion``: a picture of the group's data files, removed before
    them and renamed in after them, see :class:`sgan_cli.outputs.AtomicGroup`). A crash or Ctrl-C
    leaves either the old file or none, never a truncated one; the file's mode follows the umask
    (sgan_cli.outputs)."""
    if group is not None:
        group.add(Path(path), write, companion=companion)
    else:
        atomic_write(Path(path), write)


def write_file(
    path: str | Path,
    kind: FileKind | str,
    tensors: Mapping[str, Any],
    *,
    config: Mapping[str, Any] | None = None,
    lineage: Mapping[str, str] | None = None,
    meta: Mapping[str, Any] | None = None,
    force: bool = False,
    group: AtomicGroup | None = None,
) -> str:
    """Write an sgan file atomically (renamed in at the end of ``group`` when given); returns
    its content hash.

    ``meta`` values are stored as strings (JSON for non-strings) under their own keys.
    """
    from safetensors.torch import save_file

    kind = kind.name if isinstance(kind, FileKind) else kind
    if kind not in SCHEMAS:
        raise ValueError(f"unknown sgan file kind {kind!r}")
    path = Path(path)
    check_writable(path, force)
    metadata = {
        "kind": kind,
        "schema": str(SCHEMAS[kind]),
        "sgan_version": __version__,
        "config": json.dumps(config or {}, sort_keys=True, default=str),
        "lineage": json.dumps(dict(lineage or {}), sort_keys=True),
    }
    for key, value in (meta or {}).items():
        if key in _RESERVED:
            raise ValueError(f"metadata key {key!r} is reserved")
        # paths that are not UTF-8 (their bytes as surrogates) are recorded in a printable form
        metadata[key] = printable(value) if isinstance(value, str) else json.dumps(value)
    prepared = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    atomic_write_bytes(path, lambda tmp: save_file(prepared, str(tmp), metadata=metadata), group)
    return content_hash(prepared)


Check = Callable[[dict[str, Any], dict[str, str], Path], None]


@dataclass(frozen=True)
class FileKind:
    """One kind of sgan file: its name (the ``kind`` in its metadata) and the checks every
    reader runs on its tensors and metadata. Declared once with :func:`file_kind`, beside its
    reader; readers pass the object to :func:`read_file`, so the checks come with the import."""

    name: str
    check: Check | None = None  # raises SganError naming the file; None: see the kind's declaration

    def __str__(self) -> str:
        return self.name


_KINDS: dict[str, FileKind] = {}


def file_kind(name: str, check: Check | None = None) -> FileKind:
    """Declare the kind ``name`` (a key of :data:`SCHEMAS`) and its checks."""
    if name not in SCHEMAS:
        raise ValueError(f"unknown sgan file kind {name!r}")
    kind = FileKind(name, check)
    _KINDS[name] = kind
    return kind


def _kind(kind: FileKind | str) -> FileKind:
    """A kind given by name resolves to its declaration, which its module's import made."""
    if isinstance(kind, FileKind):
        return kind
    if kind not in _KINDS:
        raise RuntimeError(f"{kind} files are read before their checks are declared: import the module declaring them")
    return _KINDS[kind]


@contextmanager
def open_safetensors(path: Path) -> Iterator[Any]:
    """``safetensors.safe_open`` of ``path``, also when its name is not UTF-8.

    safetensors takes paths as UTF-8 text only; a name holding other bytes (legal on Linux) is
    opened by this process first and read through ``/proc/self/fd``, which names the open file
    whatever its path. Raises what ``safe_open`` raises (and OSError)."""
    from safetensors import safe_open

    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # never blocks on a pipe
        try:
            if not os.path.isdir("/proc/self/fd"):
                raise OSError(f"this system cannot open a file whose name is not UTF-8 ({printable(name)})") from None
            with safe_open(f"/proc/self/fd/{fd}", framework="pt") as f:
                yield f
        finally:
            os.close(fd)
        return
    with safe_open(name, framework="pt") as f:
        yield f


def peek_kind(path: str | Path) -> str | None:
    """The ``kind`` in a safetensors file's header, without reading its tensors; None for a
    file that is not readable safetensors (read_file then says what is wrong)."""
    from safetensors import SafetensorError

    if not Path(path).is_file():  # never open a pipe or device
        return None
    try:
        with open_safetensors(Path(path)) as f:
            return (f.metadata() or {}).get("kind")
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return None


def read_file(path: str | Path, kind: FileKind | str | tuple[FileKind | str, ...], *, what: str = "input") -> SganFile:
    """Open and validate an sgan file of the expected kind(s) (:class:`FileKind` objects, or
    names of kinds already declared).

    Every way a file can be wrong — missing, a folder, not safetensors, truncated, another
    program's safetensors, another sgan kind, a newer schema, tensors of the wrong shape —
    gives one SganError that names the file and says how to fix it.
    """
    path = Path(path)
    expected = {k.name: k for k in map(_kind, kind if isinstance(kind, tuple) else (kind,))}
    wanted = " or ".join(expected)
    _check_is_file(path, what, wanted)
    remove_stale_temps(path.parent)  # what killed writers left beside it (never read: exact names only)
    metadata, tensors = _read_safetensors(path, wanted)
    found = _check_kind(path, metadata, tuple(expected), wanted)
    writer = metadata.get("sgan_version", "")
    by = f"sgan {writer[:40]}" if writer else "an sgan that did not record its version"
    schema = _check_schema(path, metadata, found, by)
    config, lineage = _decode_config(path, metadata)
    _check_config_keys(path, found, schema, config, by)
    meta = {k: v for k, v in metadata.items() if k not in _RESERVED}
    check = expected[found].check
    if check is not None:
        check(tensors, meta, path)
    _check_tensors(tensors, path)
    f = SganFile(
        path=path,
        kind=found,
        schema=schema,
        tensors=tensors,
        config=config,
        lineage=lineage,
        meta=meta,
        sgan_version=writer,
    )
    _check_parts_agree(f)
    return f


def _check_is_file(path: Path, what: str, wanted: str) -> None:
    """The path names a regular file: it exists, and is not a folder, pipe, socket or device."""
    if not path.exists():
        raise SganError(
            f"the {what} file {path} does not exist", where=str(path), fix=f"give the path of a {wanted} file"
        )
    if path.is_dir():
        raise SganError(
            f"the {what} path {path} is a folder, not a file", where=str(path), fix=f"give the path of a {wanted} file"
        )
    if not path.is_file():  # a named pipe or device would block or never end: never opened
        raise SganError(
            f"the {what} path {path} is not a regular file (a pipe, socket or device)",
            where=str(path),
            fix=f"give the path of a {wanted} file",
        )


def _read_safetensors(path: Path, wanted: str) -> tuple[dict[str, str], dict[str, Any]]:
    """The file's metadata and tensors, or an SganError for a file safetensors cannot read."""
    from safetensors import SafetensorError

    try:
        with open_safetensors(path) as f:
            metadata = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise SganError(
            f"{path} is not a readable safetensors file (it may be truncated or of another format: {exc})",
            where=str(path),
            fix=f"give a {wanted} file written by sgan, or write it again",
        ) from None
    return metadata, tensors


def _check_kind(path: Path, metadata: dict[str, str], kinds: tuple[str, ...], wanted: str) -> str:
    """The file's ``kind``, which must be one of ``kinds``."""
    found = metadata.get("kind")
    if found is None or not found.startswith("sgan."):
        raise SganError(
            f"{path} is a safetensors file but not an sgan file (no sgan 'kind' in its metadata)",
            where=str(path),
            fix=f"give a {wanted} file written by sgan",
        )
    if found not in kinds:
        raise SganError(
            f"{path} is an {found} file, but a {wanted} file is needed here",
            where=str(path),
            fix=f"give a {wanted} file",
        )
    return found


def _check_schema(path: Path, metadata: dict[str, str], found: str, by: str) -> int:
    """The file's schema number, which this sgan must read for its kind ``found``; ``by``
    names the sgan that wrote it."""
    raw_schema = metadata.get("schema", "")
    schema = int(raw_schema) if re.fullmatch(r"[0-9]{1,9}", raw_schema) else -1
    readable = sorted({SCHEMAS[found], *OLDER_SCHEMAS.get(found, ())})
    if schema not in readable:
        newer = schema > SCHEMAS[found]
        raise SganError(
            f"{path} is an {found} file of schema {raw_schema[:20]!r}, written by {by}; this sgan "
            f"({__version__}) reads schema {' and '.join(map(str, readable))}"
            + (" (it is from a newer sgan)" if newer else ""),
            where=str(path),
            fix=(
                f"read it with {by} or a newer one, or write it again with this version of sgan"
                if newer
                else "write the file again with this version of sgan, or use the sgan version that wrote it"
            ),
        )
    return schema


def _decode_config(path: Path, metadata: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The ``config`` (a JSON object) and ``lineage`` (a JSON object of strings) metadata."""
    try:
        config = json.loads(metadata.get("config", "{}"))
        lineage = json.loads(metadata.get("lineage", "{}"))
    except json.JSONDecodeError:
        raise SganError(
            f"{path} has corrupt metadata (config or lineage is not JSON)", where=str(path), fix="write the file again"
        ) from None
    if (
        not isinstance(config, dict)
        or not isinstance(lineage, dict)
        or not all(isinstance(v, str) for v in lineage.values())
    ):
        raise SganError(
            f"{path} has corrupt metadata (config must be a JSON object, lineage an "
            f"object of strings; got {type(config).__name__} and {type(lineage).__name__})",
            where=str(path),
            fix="write the file again with sgan",
        )
    return config, lineage


def _check_config_keys(path: Path, found: str, schema: int, config: dict[str, Any], by: str) -> None:
    """Every configuration key the file records is one this sgan knows for its kind and schema."""
    unknown = unknown_config_keys(found, schema, config)
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise SganError(
            f"{path} holds configuration this sgan ({__version__}) does not know ({shown}), written by {by} "
            f"under schema {schema} of {found}; dropping it would train or sample something else",
            where=str(path),
            fix=f"read it with {by} or a newer one, or write it again with this version of sgan",
        )


def _check_tensors(tensors: Mapping[str, Any], path: Path) -> None:
    """Every floating-point tensor of an sgan file is finite: sgan writes no NaN or infinity
    (a diverged run stops before its save), so one is damage, not data."""
    chunk = 1 << 24  # checked in pieces: a mask of a 15 GB tensor would be another 4 GB
    for name, t in tensors.items():
        if not (t.is_floating_point() or t.is_complex()):
            continue
        flat = t.reshape(-1)
        if not all(bool(flat[i : i + chunk].isfinite().all()) for i in range(0, flat.numel(), chunk)):
            raise SganError(
                f"{path}: tensor {name!r} holds NaN or infinite values",
                where=str(path),
                fix="write the file again with sgan (the file is damaged or was not written by sgan)",
            )


def _check_parts_agree(f: SganFile) -> None:
    """Metadata, configuration and tensors tell one story: each optional tensor is present
    exactly when the file says it should be (the checks per kind and schema)."""

    def refuse(what: str) -> None:
        raise SganError(f"{f.path}: {what}", where=str(f.path), fix="write the file again with sgan")

    if f.kind == "sgan.dictionary" and f.schema >= 2:
        says = (f.config.get("dict") or {}).get("mean") if isinstance(f.config.get("dict"), dict) else None
        if says is True and "mean" not in f.tensors:
            refuse("its configuration says the atoms were learned with a mean (dict.mean), but it holds no mean")
        if says is False and "mean" in f.tensors and bool(f.tensors["mean"].any()):
            refuse("its configuration says the atoms were learned without a mean (dict.mean), but it holds one")
    if f.kind in ("sgan.generator", "sgan.checkpoint") and f.schema >= 2:
        # the nets are rebuilt from the model section (a resume from every run section): a file of
        # this schema records each of their keys, so none may fall back to a default unnoticed
        role = f.meta.get("role", "generator" if f.kind == "sgan.generator" else "")
        needed = ("data", "model", "gan", "recon", "train") if role == "checkpoint" else ("model",)
        sections = CONFIG_KEYS[f.kind][f.schema]
        missing = [
            f"{s}.{k}"
            for s in needed
            for k in sorted(sections[s] or ())
            if not isinstance(f.config.get(s), dict) or k not in f.config[s]
        ]
        if missing:
            shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
            refuse(f"its configuration lacks {shown}, which schema {f.schema} of {f.kind} always records")
        head = "" if f.kind == "sgan.generator" else "generator."
        if role in ("generator", "checkpoint") and f.meta.get("sparse") == "true":
            if f"{head}synthesis.mean" not in f.tensors:
                refuse(f"a sparse generator of schema {f.schema} without its dictionary's mean ({head}synthesis.mean)")
    if f.kind == "sgan.generator":
        has_ema = any(k.startswith("ema.") for k in f.tensors)
        if f.meta.get("ema") == "false" and has_ema:
            refuse("it says it holds no EMA weights, but has 'ema.' tensors")


def meta_int(
    meta: Mapping[str, str], key: str, path: Path, rng: Range | None = None, default: int | None = None
) -> int:
    """A whole-number metadata field in its range (the row ``file.<key>`` of
    :data:`sgan_cli.ranges.RANGES`, unless ``rng`` is given); ``default`` when absent (else an
    error). Raises SganError naming the file and field."""
    raw = meta.get(key)
    if raw is None:
        if default is not None:
            return default
        raise SganError(
            f"{path} lacks the metadata field {key!r}", where=str(path), fix="write the file again with sgan"
        )
    text = raw.strip()
    if re.fullmatch(r"[+-]?[0-9]+", text) is None:  # ASCII digits: str.isdigit takes '²', and '+-5' passed
        raise SganError(
            f"{path}: metadata field {key!r} must be a whole number, got {raw[:40]!r}",
            where=str(path),
            fix="write the file again with sgan",
        )
    value = int(text)
    check_field(value, key, path, rng)
    return value


def meta_float(
    meta: Mapping[str, str],
    key: str,
    path: Path,
    rng: Range | None = None,
    default: float | None = None,
    allow_nan: bool = False,
) -> float:
    """A number metadata field (JSON or repr text), finite and in its range (as for
    :func:`meta_int`; NaN too when ``allow_nan``: 'not measured'); ``default`` when absent."""
    import math

    raw = meta.get(key)
    if raw is None:
        if default is not None:
            return default
        raise SganError(
            f"{path} lacks the metadata field {key!r}", where=str(path), fix="write the file again with sgan"
        )
    try:
        value = float(raw)
    except (ValueError, OverflowError):
        raise SganError(
            f"{path}: metadata field {key!r} must be a number, got {raw[:40]!r}",
            where=str(path),
            fix="write the file again with sgan",
        ) from None
    if allow_nan and math.isnan(value):
        return value
    check_field(value, key, path, rng)
    return value


def check_field(value: float, key: str, path: Path, rng: Range | None = None, what: str | None = None) -> None:
    """``value`` of the file field ``key`` (metadata, or a count read off a tensor's shape,
    named ``what``) is in its range; else an SganError naming the file."""
    name = what or f"metadata field {key!r}"
    check_number(value, name, rng or field_range(key), where=str(path), fix="write the file again with sgan")


def require_tensor(tensors: dict[str, Any], name: str, ndim: int, path: Path) -> Any:
    """The tensor ``name`` with ``ndim`` dimensions, or an SganError naming the file."""
    t = tensors.get(name)
    if t is None:
        raise SganError(f"{path} has no tensor {name!r}", where=str(path), fix="write the file again with sgan")
    if t.ndim != ndim:
        raise SganError(
            f"{path}: tensor {name!r} has shape {tuple(t.shape)}, expected {ndim} dimensions",
            where=str(path),
            fix="write the file again with sgan",
        )
    return t


# --- sgan.dictionary ---------------------------------------------------------------------


@dataclass
class DictionaryFile:
    """A dictionary: atoms [K, dim] and the geometry they were learned for (loaded from a
    file, or learned in this process: then ``hash`` is empty and ``file`` None until saved)."""

    atoms: Any  # torch.Tensor [K, dim], unit-norm rows
    mean: Any  # torch.Tensor [dim], added back at synthesis (zeros for schema-1 files, or learn-dict --no-mean)
    channels: int
    image_size: int
    patch: int | None  # None: whole-image atoms (dim = C·H·W); P: P×P×C patch atoms
    stride: int
    alpha: float
    achieved_sparsity: float
    hash: str = ""  # content hash of its file (lineage), "" before it is saved
    file: SganFile | None = None

    @property
    def n_atoms(self) -> int:
        return int(self.atoms.shape[0])

    @property
    def source(self) -> str:
        """Where it came from, for messages: its file, or "(in memory)" before it is saved."""
        return str(self.file.path) if self.file is not None else "(in memory)"


def _validate_dictionary(tensors: dict[str, Any], meta: dict[str, str], path: Path) -> None:
    atoms = require_tensor(tensors, "atoms", 2, path)
    channels, size = meta_int(meta, "channels", path), meta_int(meta, "image_size", path)
    patch = None if meta.get("patch", "").strip() == "null" else meta_int(meta, "patch", path)
    if patch is not None and patch > size:
        raise SganError(
            f"{path}: its {patch}×{patch} patches are larger than its {size}×{size} images",
            where=str(path),
            fix="learn the dictionary again with sgan learn-dict",
        )
    meta_int(meta, "stride", path, default=1)
    meta_float(meta, "alpha", path, default=float("nan"), allow_nan=True)
    meta_float(meta, "achieved_sparsity", path, default=float("nan"), allow_nan=True)
    check_field(atoms.shape[0], "n_atoms", path, what="its number of atoms")
    side = size if patch is None else patch
    expected = channels * side * side
    if atoms.shape[1] != expected:
        raise SganError(
            f"{path}: atoms have {atoms.shape[1]} values each, but {channels}×{side}×{side} = {expected} were recorded",
            where=str(path),
            fix="learn the dictionary again with sgan learn-dict",
        )
    norms = atoms.float().norm(dim=1)
    if not bool(((norms - 1).abs() < 1e-3).all()):
        raise SganError(
            f"{path}: atoms are not unit-norm rows",
            where=str(path),
            fix="learn the dictionary again with sgan learn-dict",
        )
    if "mean" in tensors:
        mean = require_tensor(tensors, "mean", 1, path)
        if mean.shape[0] != expected or not bool(mean.float().isfinite().all()):
            raise SganError(
                f"{path}: the mean has {mean.shape[0]} values (or non-finite ones), but the atoms have {expected}",
                where=str(path),
                fix="learn the dictionary again with sgan learn-dict",
            )


DICTIONARY = file_kind("sgan.dictionary", _validate_dictionary)
# training checkpoints, critics and reconstructors: their readers check every tensor against the
# nets the file's config builds (sgan_cli.checkpoint.check_checkpoint_fits, sgan_cli.run_files)
CHECKPOINT = file_kind("sgan.checkpoint")


def check_dictionary_fits(d: DictionaryFile, channels: int, size: int, source: str) -> None:
    """A dictionary fits C×S×S images when its atoms have C channels and are whole S×S images
    or patches of at most S×S (train and encode both check this before any work)."""
    side = d.image_size if d.patch is None else d.patch
    atoms = f"{d.n_atoms} {'whole-image' if d.patch is None else 'patch'} atoms of {d.channels}×{side}×{side}"
    if d.channels != channels:
        why = f"the atoms have {d.channels} channels, the images {channels}"
    elif d.patch is None and d.image_size != size:
        why = f"whole-image atoms are {side}×{side}, but the data is {size}×{size}"
    elif d.patch is not None and d.patch > size:
        why = f"{side}×{side} patches exceed the {size}×{size} images"
    else:
        return
    learn = "learn a dictionary on these images with sgan learn-dict"
    raise SganError(
        f"the dictionary {source} ({atoms}) does not fit the {channels}×{size}×{size} images: {why}",
        where=source,
        fix=f"pass --image-size {d.image_size} to resize the images, or {learn}"
        if d.patch is None and d.channels == channels
        else learn,
    )


def load_dictionary(path: str | Path) -> DictionaryFile:
    """Read and validate a ``sgan.dictionary`` file."""
    import torch

    f = read_file(path, DICTIONARY, what="dictionary")
    atoms = f.tensors["atoms"].float()
    patch = None if f.meta["patch"].strip() == "null" else int(f.meta["patch"])  # all checked by the validator
    mean = f.tensors["mean"].float() if "mean" in f.tensors else torch.zeros(atoms.shape[1])
    return DictionaryFile(
        atoms=atoms,
        mean=mean,
        channels=int(f.meta["channels"]),
        image_size=int(f.meta["image_size"]),
        patch=patch,
        stride=int(f.meta.get("stride", "1")),
        alpha=float(f.meta.get("alpha", "nan")),
        achieved_sparsity=float(f.meta.get("achieved_sparsity", "nan")),
        hash=content_hash(f.tensors),
        file=f,
    )


def save_dictionary(
    path: str | Path, job: Any, config: Mapping[str, Any], force: bool = False, group: AtomicGroup | None = None
) -> str:
    """Write a learned dictionary (a :class:`sgan_cli.dictionary_job.DictionaryJob`), renamed in at the
    end of ``group`` when given; returns its hash."""
    r = job.learned
    meta = {
        "dataset": job.dataset,
        "channels": str(job.channels),
        "image_size": str(job.image_size),
        "patch": json.dumps(job.patch),
        "stride": str(job.stride),
        "n_atoms": str(r.atoms.shape[0]),
        "dim": str(r.atoms.shape[1]),
        "target_sparsity": json.dumps(r.target_sparsity),
        "achieved_sparsity": repr(r.achieved_sparsity),
        "alpha": repr(r.alpha),
        "objective": repr(r.objective),
        "train_objective": repr(r.train_objective),
        "psnr_db": repr(r.psnr),
        "n_signals": str(job.n_signals),
        "n_heldout": str(r.n_heldout),
        "measured_on": "held-out" if r.n_heldout else "training",  # what sparsity, objective and PSNR are of
        "solver": r.solver,
        "steps": str(r.steps),
    }
    import torch

    mean = job.mean if job.mean is not None else torch.zeros(r.atoms.shape[1])
    return write_file(
        path,
        "sgan.dictionary",
        {"atoms": r.atoms, "mean": mean.float().contiguous()},
        config=config,
        meta=meta,
        force=force,
        group=group,
    )


# --- sgan.samples and sgan.latents: written by sample and encode, read by data, score and encode ---


def _validate_samples(tensors: dict[str, Any], meta: dict[str, str], path: Path) -> None:
    """uint8 images [N, C, H, W]; z, codes and labels, where present, have N rows."""
    import torch

    images = require_tensor(tensors, "images", 4, path)
    if images.dtype != torch.uint8:
        raise SganError(
            f"{path}: images must be uint8, found {images.dtype}",
            where=str(path),
            fix="write the samples again with sgan sample",
        )
    _, c, h, w = (int(x) for x in images.shape)
    if not field_range("channels").contains(c) or h < 1 or w < 1:
        raise SganError(
            f"{path}: images of shape {tuple(images.shape)} have no pixels or {c} channels (1 to 4 are images)",
            where=str(path),
            fix="write the samples again with sgan sample",
        )
    for name in ("z", "codes", "labels"):
        t = tensors.get(name)
        if t is not None and (t.ndim == 0 or t.shape[0] != images.shape[0]):
            raise SganError(
                f"{path}: tensor {name!r} has {t.shape[0] if t.ndim else 0} rows for {images.shape[0]} images",
                where=str(path),
                fix="write the samples again with sgan sample",
            )


SAMPLES = file_kind("sgan.samples", _validate_samples)


def _validate_latents(tensors: dict[str, Any], meta: dict[str, str], path: Path) -> None:
    """uint8 originals and reconstructions of one shape; psnr [N]; z or codes with N rows."""
    import torch

    originals = require_tensor(tensors, "originals", 4, path)
    recon = require_tensor(tensors, "reconstructions", 4, path)
    q = require_tensor(tensors, "psnr", 1, path)
    fix = "write the file again with sgan encode"
    if originals.dtype != torch.uint8 or recon.dtype != torch.uint8:
        raise SganError(f"{path}: originals and reconstructions must be uint8", where=str(path), fix=fix)
    if originals.shape != recon.shape or q.shape[0] != originals.shape[0]:
        raise SganError(
            f"{path}: originals {tuple(originals.shape)}, reconstructions "
            f"{tuple(recon.shape)} and psnr {tuple(q.shape)} do not match",
            where=str(path),
            fix=fix,
        )
    if "z" not in tensors and "codes" not in tensors:
        raise SganError(f"{path} holds neither z nor codes", where=str(path), fix=fix)
    for name in ("z", "codes"):
        t = tensors.get(name)
        if t is not None and (t.ndim < 2 or t.shape[0] != originals.shape[0]):
            raise SganError(
                f"{path}: tensor {name!r} of shape {tuple(t.shape)} does not have one row per image",
                where=str(path),
                fix=fix,
            )


LATENTS = file_kind("sgan.latents", _validate_latents)
