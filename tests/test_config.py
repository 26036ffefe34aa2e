"""Configuration: defaults → recipe → --set, with errors that name the key."""

from __future__ import annotations

import pytest

from sgan_cli.config import load_config, parse_set
from sgan_cli.errors import SganError


def test_defaults():
    cfg = load_config()
    assert cfg.data.name == "digits" and cfg.dict.sparsity is None and cfg.dict.atoms is None


def test_recipe_then_set(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data:\n  name: mnist\ndict:\n  atoms: 50\n  sparsity: 0.2\n")
    cfg = load_config(recipe, ["dict.atoms=100", "dict.alpha=1e-2", "dict.patch=null"])
    assert cfg.data.name == "mnist" and cfg.dict.atoms == 100 and cfg.dict.sparsity == 0.2
    assert cfg.dict.alpha == pytest.approx(0.01) and cfg.dict.patch is None


def test_unknown_key_in_recipe_names_key_and_file(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("dict:\n  atomz: 50\n")
    with pytest.raises(SganError) as exc:
        load_config(recipe)
    assert "dict.atomz" in exc.value.message and str(recipe) in exc.value.message


def test_unknown_section(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("dictionary:\n  atoms: 50\n")
    with pytest.raises(SganError, match="unknown section 'dictionary'"):
        load_config(recipe)


def test_unknown_set_key():
    with pytest.raises(SganError, match="unknown configuration key 'dict.nope'"):
        load_config(None, ["dict.nope=3"])


def test_type_errors():
    with pytest.raises(SganError, match="dict.atoms must be int"):
        load_config(None, ["dict.atoms=many"])
    with pytest.raises(SganError, match="not of the form"):
        parse_set("dict.atoms")


def test_bad_yaml_and_missing_recipe(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dict: [unclosed\n")
    with pytest.raises(SganError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(SganError, match="does not exist"):
        load_config(tmp_path / "none.yaml")


def test_every_recipe_loads():
    from pathlib import Path

    recipes = sorted((Path(__file__).parent.parent / "recipes").glob("*.yaml"))
    assert recipes, "no recipes found"
    for recipe in recipes:
        load_config(recipe)
