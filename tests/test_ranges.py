"""One range per quantity: a command-line option, the configuration key it sets and the file
field that records it accept and refuse the same values (sgan_cli.ranges). Each case runs the
three entry points end to end: the CLI option, ``--set`` of the key, and a file read back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import error_text, invoke

from sgan_cli.config import ModelConfig, load_config, to_dict
from sgan_cli.contracts import DICTIONARY, load_dictionary, write_file
from sgan_cli.errors import SganError
from sgan_cli.run_files import GENERATOR, load_generator


def _dictionary(path, atoms, **meta):
    """A dictionary file of unit-norm ``atoms`` with these metadata fields (8×8 gray images)."""
    fields = {"channels": "1", "image_size": "8", "patch": "null", "stride": "1", **meta}
    write_file(path, DICTIONARY, {"atoms": atoms}, meta=fields, force=True)
    return path


def _dense_generator(path, model):
    """A (weightless) dense generator file whose config has this model section (the rest of
    the section as defaults: a generator file records every model key)."""
    meta = {"channels": "1", "image_size": "8", "sparse": "false"}
    write_file(path, GENERATOR, {}, config={"model": {**to_dict(ModelConfig()), **model}}, meta=meta, force=True)
    return path


def _learn_dict(runner, tmp_path, *args):
    return invoke(runner, ["learn-dict", "digits", "--limit", "50", *args, "--out", str(tmp_path / "d.safetensors")])


def test_atoms_are_at_most_2_to_the_20_for_the_option_the_key_and_the_file(runner, tmp_path):
    msg = error_text(_learn_dict(runner, tmp_path, "--atoms", str(2**20 + 1)))
    assert "--atoms must be in [1, 1048576], got 1048577" in msg
    msg = error_text(_learn_dict(runner, tmp_path, "--set", f"dict.atoms={2**20 + 1}"))
    assert "dict.atoms must be in [1, 1048576], got 1048577" in msg
    # 2×2 patch atoms (4 values each) of 0.5: unit norm, so only their number is wrong
    with pytest.raises(SganError, match=r"its number of atoms must be in \[1, 1048576\], got 1048577"):
        load_dictionary(_dictionary(tmp_path / "big.safetensors", torch.full((2**20 + 1, 4), 0.5), patch="2"))
    # the bound itself passes all three (the option and the key then meet the memory check)
    for args in (["--atoms", str(2**20)], ["--set", f"dict.atoms={2**20}"]):
        msg = error_text(_learn_dict(runner, tmp_path, "--patch", "2", *args))
        assert "must be in" not in msg and "would need about" in msg
    assert load_dictionary(_dictionary(tmp_path / "max.safetensors", torch.full((2**20, 4), 0.5), patch="2")).n_atoms


def test_minibatch_discrimination_is_at_most_65536_for_the_option_the_key_and_the_file(runner, tmp_path):
    msg = error_text(invoke(runner, ["train", "--minibatch-disc", "65537", "--dry-run"]))
    assert "--minibatch-disc must be in [0, 65536], got 65537" in msg
    msg = error_text(invoke(runner, ["train", "--set", "model.minibatch_disc=65537", "--dry-run"]))
    assert "model.minibatch_disc must be in [0, 65536], got 65537" in msg
    path = _dense_generator(tmp_path / "g.safetensors", {"minibatch_disc": 65537})
    with pytest.raises(SganError, match=r"model.minibatch_disc must be in \[0, 65536\], got 65537") as err:
        load_generator(path)
    assert str(path) in err.value.message
    assert invoke(runner, ["train", "--minibatch-disc", "65536", "--dry-run"]).exit_code == 0
    assert load_config(None, ["model.minibatch_disc=65536"]).model.minibatch_disc == 65536


def test_stride_is_bounded_alike_and_a_stride_beyond_the_image_reads_back(runner, tmp_path):
    msg = error_text(_learn_dict(runner, tmp_path, "--patch", "4", "--stride", "16385"))
    assert "--stride must be in [1, 16384], got 16385" in msg
    msg = error_text(_learn_dict(runner, tmp_path, "--patch", "4", "--set", "dict.stride=16385"))
    assert "dict.stride must be in [1, 16384], got 16385" in msg
    atoms = torch.full((3, 16), 0.25)  # 4×4 patch atoms
    with pytest.raises(SganError, match=r"metadata field 'stride' must be in \[1, 16384\], got 16385"):
        load_dictionary(_dictionary(tmp_path / "s.safetensors", atoms, patch="4", stride="16385"))
    meta = {"channels": "1", "image_size": "8", "sparse": "false", "dictionary_stride": "16385"}
    write_file(tmp_path / "g.safetensors", GENERATOR, {}, config={}, meta=meta)
    with pytest.raises(SganError, match=r"metadata field 'dictionary_stride' must be in \[1, 16384\], got 16385"):
        load_generator(tmp_path / "g.safetensors")
    # learn-dict accepts a stride longer than the 8×8 images (one patch position): its file reads back
    assert _learn_dict(runner, tmp_path, "--patch", "4", "--stride", "9", "--atoms", "8").exit_code == 0
    d = load_dictionary(tmp_path / "d.safetensors")
    assert (d.patch, d.stride) == (4, 9)


def test_patches_are_at_least_2_for_the_option_the_key_and_the_file(runner, tmp_path):
    msg = error_text(_learn_dict(runner, tmp_path, "--patch", "1"))
    assert "--patch must be in [2, 4096], got 1" in msg
    msg = error_text(_learn_dict(runner, tmp_path, "--set", "dict.patch=1"))
    assert "dict.patch must be in [2, 4096], got 1" in msg
    # 1×1 "patches" of gray images: one value per atom, ±1 the only unit-norm ones
    with pytest.raises(SganError, match=r"metadata field 'patch' must be in \[2, 4096\], got 1"):
        load_dictionary(_dictionary(tmp_path / "p1.safetensors", torch.tensor([[1.0], [-1.0]]), patch="1"))
    meta = {"channels": "1", "image_size": "8", "sparse": "true", "dictionary_stride": "1"}
    kernel = torch.ones(2, 1, 1, 1)
    write_file(tmp_path / "g.safetensors", GENERATOR, {"synthesis.kernel": kernel}, config={}, meta=meta)
    with pytest.raises(SganError, match=r"the side of its synthesis.kernel \(the patch\) must be in \[2, 4096\]"):
        load_generator(tmp_path / "g.safetensors")
    # a 2×2 patch dictionary reads back
    assert load_dictionary(_dictionary(tmp_path / "p2.safetensors", torch.full((3, 4), 0.5), patch="2")).patch == 2


def test_a_file_field_without_a_range_is_a_programming_error():
    from sgan_cli.contracts import meta_int

    with pytest.raises(KeyError, match="no range for the file metadata field 'colour'"):
        meta_int({"colour": "3"}, "colour", Path("f.safetensors"))


def test_config_keys_options_and_fields_that_share_a_quantity_share_its_row():
    """An option or file field aliased to a key reads the key's row; no alias points nowhere."""
    from sgan_cli.ranges import RANGES, SAME_AS, option_range, range_of

    assert all(target in RANGES and alias not in RANGES for alias, target in SAME_AS.items())
    assert option_range("learn_dict", "atoms") is RANGES["dict.atoms"] is range_of("file.n_atoms")
    assert option_range("train", "minibatch_disc") is RANGES["model.minibatch_disc"]
    assert option_range("learn_dict", "stride") is range_of("file.stride") is range_of("file.dictionary_stride")
    assert option_range("learn_dict", "patch") is range_of("file.patch") is RANGES["dict.patch"]
