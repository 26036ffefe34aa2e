"""File contracts: round trip, atomicity, and a clear error for every kind of bad file."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from sgan_cli.contracts import SCHEMAS, content_hash, load_dictionary, read_file, write_file
from sgan_cli.errors import SganError


def _atoms(k: int = 4, dim: int = 9) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(k, dim), dim=1)


def _dict_meta(channels: int = 1, size: int = 8, patch: int | None = 3) -> dict:
    return {
        "channels": str(channels),
        "image_size": str(size),
        "patch": json.dumps(patch),
        "stride": "1",
        "alpha": "0.5",
    }


def test_round_trip_keeps_tensors_config_lineage(tmp_path):
    atoms = _atoms()
    path = tmp_path / "d.safetensors"
    digest = write_file(
        path,
        "sgan.dictionary",
        {"atoms": atoms},
        config={"dict": {"atoms": 4}},
        lineage={"data": "digits"},
        meta=_dict_meta(),
    )
    f = read_file(path, "sgan.dictionary")
    assert torch.equal(f.tensors["atoms"], atoms)
    assert f.kind == "sgan.dictionary" and f.schema == SCHEMAS["sgan.dictionary"]
    assert f.config == {"dict": {"atoms": 4}} and f.lineage == {"data": "digits"}
    assert digest == content_hash({"atoms": atoms})
    d = load_dictionary(path)
    assert d.patch == 3 and d.channels == 1 and d.n_atoms == 4 and d.hash == digest


def test_content_hash_depends_on_values_not_metadata():
    a = _atoms()
    b = a.clone()
    b[0, 0] += 1e-3
    assert content_hash({"atoms": a}) == content_hash({"atoms": a.clone()})
    assert content_hash({"atoms": a}) != content_hash({"atoms": b})


def test_no_silent_overwrite_and_force(tmp_path):
    path = tmp_path / "d.safetensors"
    write_file(path, "sgan.dictionary", {"atoms": _atoms()}, meta=_dict_meta())
    with pytest.raises(SganError, match="already exists.*--force"):
        write_file(path, "sgan.dictionary", {"atoms": _atoms()}, meta=_dict_meta())
    write_file(path, "sgan.dictionary", {"atoms": _atoms()}, meta=_dict_meta(), force=True)


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    import safetensors.torch as st

    path = tmp_path / "d.safetensors"

    def boom(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(st, "save_file", boom)
    with pytest.raises(KeyboardInterrupt):
        write_file(path, "sgan.dictionary", {"atoms": _atoms()}, meta=_dict_meta())
    assert list(tmp_path.iterdir()) == []


def test_missing_file(tmp_path):
    with pytest.raises(SganError, match="does not exist"):
        read_file(tmp_path / "nope.safetensors", "sgan.dictionary")


def test_truncated_file(tmp_path):
    path = tmp_path / "d.safetensors"
    write_file(path, "sgan.dictionary", {"atoms": _atoms()}, meta=_dict_meta())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SganError, match="not a readable safetensors file"):
        read_file(path, "sgan.dictionary")


def test_garbage_file(tmp_path):
    path = tmp_path / "d.safetensors"
    path.write_text("hello, I am not safetensors")
    with pytest.raises(SganError, match="not a readable safetensors file"):
        read_file(path, "sgan.dictionary")


def test_foreign_safetensors_file(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(3)}, str(path), metadata={"format": "pt"})
    with pytest.raises(SganError, match="not an sgan file"):
        read_file(path, "sgan.dictionary")


def test_wrong_kind(tmp_path):
    path = tmp_path / "s.safetensors"
    write_file(path, "sgan.samples", {"images": torch.zeros(2, 1, 8, 8, dtype=torch.uint8)})
    with pytest.raises(SganError, match="is an sgan.samples file, but a sgan.dictionary file is needed"):
        read_file(path, "sgan.dictionary")


def test_newer_schema_refused(tmp_path):
    path = tmp_path / "d.safetensors"
    save_file({"atoms": _atoms()}, str(path), metadata={"kind": "sgan.dictionary", "schema": "99", **_dict_meta()})
    with pytest.raises(SganError, match="schema '99'"):
        read_file(path, "sgan.dictionary")


def test_dictionary_shape_checks(tmp_path):
    path = tmp_path / "d.safetensors"
    write_file(path, "sgan.dictionary", {"atoms": _atoms(4, 10)}, meta=_dict_meta())  # 10 ≠ 1·3·3
    with pytest.raises(SganError, match="atoms have 10 values each"):
        load_dictionary(path)
    write_file(path, "sgan.dictionary", {"atoms": 2 * _atoms(4, 9)}, meta=_dict_meta(), force=True)
    with pytest.raises(SganError, match="not unit-norm"):
        load_dictionary(path)


def test_outputs_inside_a_file_are_one_clear_error(tmp_path):
    """An --out below an existing file: refused up front (check_writable) and at write time
    (atomic writes, folders made for runs and samples) with a message, not NotADirectoryError."""
    from sgan_cli.contracts import atomic_write_bytes, check_writable
    from sgan_cli.outputs import ensure_folder

    blocker = tmp_path / "afile"
    blocker.write_text("x")
    target = blocker / "sub" / "out.safetensors"
    with pytest.raises(SganError, match="afile is a file"):
        check_writable(target, force=True)
    with pytest.raises(SganError, match="afile is a file"):
        atomic_write_bytes(target, lambda tmp: tmp.write_bytes(b""))
    with pytest.raises(SganError, match="afile is a file"):
        ensure_folder(blocker / "run")
    ensure_folder(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()
    check_writable(tmp_path / "a" / "b" / "new.safetensors", force=False)
