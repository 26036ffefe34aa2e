"""Property-based tests of the file readers and the config loader (issue 25).

Whatever a file's metadata, configuration keys or tensors hold — random text, random key
sets, random dtypes, shapes and values — reading it through sgan's loaders gives a correct
load or one clear SganError; never another exception, never a silent default. The same for
recipes and ``--set`` values. Hypothesis draws the cases (the same each run, no example
database in the checkout); ``SGAN_SLOW_TESTS=1`` draws ten times as many.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file

from sgan_cli.config import SganConfig, apply_mapping, check_ranges, parse_set, set_value
from sgan_cli.contracts import read_file
from sgan_cli.errors import SganError
from sgan_cli.schemas import CONFIG_KEYS, SCHEMAS, unknown_config_keys

SETTINGS = settings(
    max_examples=400 if os.environ.get("SGAN_SLOW_TESTS") == "1" else 40,
    deadline=None,
    database=None,  # nothing written into the working folder
    derandomize=True,  # the same cases every run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
TINY = ["model.arch=mlp", "model.g_width=16", "model.d_width=8", "model.z_dim=4", "train.batch_size=8"]


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    """One valid file of each kind, as sgan writes them."""
    from sgan_cli.classifier import ClassifierInfo, LeNet, save_classifier
    from sgan_cli.config import load_config
    from sgan_cli.contracts import write_file
    from sgan_cli.training import run_training

    root = tmp_path_factory.mktemp("valid")
    atoms = torch.nn.functional.normalize(torch.randn(16, 64, generator=torch.Generator().manual_seed(0)), dim=1)
    d = root / "dictionary.safetensors"
    meta = {"channels": "1", "image_size": "8", "patch": "null", "stride": "1", "alpha": "0.5"}
    write_file(d, "sgan.dictionary", {"atoms": atoms, "mean": torch.zeros(64)}, meta=meta, config={"dict": {}})
    run_training(load_config(None, [*TINY, f"train.dict={d}", "train.steps=2"]), root / "run")
    samples = root / "samples.safetensors"
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    write_file(samples, "sgan.samples", {"images": images, "z": torch.randn(5, 4), "codes": torch.rand(5, 16)})
    clf = root / "clf.safetensors"
    info = ClassifierInfo("digits", 1, 8, 10, 8, 16, 0.5, 10, 10)
    save_classifier(clf, LeNet(1, 8, 10, 8, 16), info, {"classifier": {"epochs": 1}})
    stats = root / "stats.safetensors"
    feats = torch.randn(6, 3, dtype=torch.float64)
    tensors = {"features": feats, "logits": torch.randn(6, 2), "mean": feats.mean(0), "cov": torch.eye(3).double()}
    write_file(stats, "sgan.stats", tensors, meta={"extractor": "x", "n": "6"})
    return {
        "sgan.dictionary": d,
        "sgan.generator": root / "run" / "generator.safetensors",
        "sgan.checkpoint": root / "run" / "checkpoint.safetensors",
        "sgan.samples": samples,
        "sgan.classifier": clf,
        "sgan.stats": stats,
    }


def load(kind: str, path: Path) -> object:
    """The loader a command uses for the kind (which also reads what the validator checked)."""
    from sgan_cli.classifier import load_classifier
    from sgan_cli.config import DataConfig
    from sgan_cli.contracts import load_dictionary, read_file
    from sgan_cli.data import load_data
    from sgan_cli.reference_stats import STATS
    from sgan_cli.run_files import load_generator

    if kind == "sgan.dictionary":
        return load_dictionary(path)
    if kind == "sgan.generator":
        return load_generator(path)
    if kind == "sgan.samples":
        return load_data(DataConfig(name=str(path)))
    if kind == "sgan.classifier":
        return load_classifier(path)
    if kind == STATS.name:  # load_stats needs an extractor too; the checks are the kind's
        return read_file(path, STATS)
    return read_file(path, kind)


def parts(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    with safe_open(str(path), "pt") as f:
        return dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}


def loads_or_refuses(kind: str, metadata: dict[str, str], tensors: dict[str, torch.Tensor]) -> object | None:
    """Write the file and load it: the loaded object, or None after one SganError (any other
    exception fails the test)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
        try:
            loaded = load(kind, path)
        except SganError as exc:
            assert str(path) in exc.message or "f.safetensors" in exc.message
            return None
        for name, t in read_file(path, kind).tensors.items():  # nothing loaded is NaN or infinite
            assert not t.is_floating_point() or bool(t.isfinite().all()), name
        return loaded


KINDS = sorted(SCHEMAS)
FUZZED = [k for k in KINDS if k != "sgan.latents"]  # latents are read by score alone, like samples

text = st.text(max_size=24)
numbers_as_text = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["null", "true", "", " 8", "+-5", "²", "1e400", "0x10", "[]", "{}"]),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(), text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)),
    max_leaves=8,
)


@SETTINGS
@given(data=st.data())
@pytest.mark.parametrize("kind", FUZZED)
def test_random_metadata_loads_or_is_refused(valid, kind, data):
    metadata, tensors = parts(valid[kind])
    keys = sorted(metadata)
    for key in data.draw(st.lists(st.sampled_from(keys), max_size=4, unique=True), label="changed"):
        if data.draw(st.booleans(), label=f"drop {key}"):
            del metadata[key]
        else:
            metadata[key] = data.draw(st.one_of(text, numbers_as_text), label=key)
    metadata.update(data.draw(st.dictionaries(text, text, max_size=2), label="added"))
    loaded = loads_or_refuses(kind, metadata, tensors)
    if loaded is not None:  # a load is a correct one: the kind and schema it claims are readable
        assert metadata.get("kind") == kind and int(metadata["schema"]) <= SCHEMAS[kind]


def _config_strategy(kind: str) -> st.SearchStrategy[dict]:
    sections = CONFIG_KEYS[kind][SCHEMAS[kind]]
    known = {s: sorted(keys) if keys is not None else [] for s, keys in sections.items()}
    section_names = st.one_of(st.sampled_from(sorted(known) or ["data"]), text)

    def keys_of(section: str) -> st.SearchStrategy[str]:
        return st.one_of(st.sampled_from(known[section]), text) if known.get(section) else text

    return st.dictionaries(section_names, st.just(None), max_size=3).flatmap(
        lambda chosen: st.fixed_dictionaries(
            {s: st.one_of(st.dictionaries(keys_of(s), json_values, max_size=4), json_values) for s in chosen}
        )
    )


@SETTINGS
@given(data=st.data())
@pytest.mark.parametrize("kind", FUZZED)
def test_random_config_keys_load_or_are_refused_never_dropped(valid, kind, data):
    metadata, tensors = parts(valid[kind])
    config = data.draw(_config_strategy(kind), label="config")
    metadata["config"] = json.dumps(config)
    loaded = loads_or_refuses(kind, metadata, tensors)
    if loaded is not None:  # only a config whose every key this sgan knows is read
        assert unknown_config_keys(kind, SCHEMAS[kind], config) == []


dtypes = st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.uint8])
special = st.sampled_from([0.0, 1.0, -1.0, 255.0, 1e30, float("nan"), float("inf"), -float("inf")])


@st.composite
def tensors_like(draw, shape_hint: tuple[int, ...]) -> torch.Tensor:
    ndim = draw(st.integers(0, 4))
    shape = tuple(draw(st.sampled_from([0, 1, 2, 3, shape_hint[i] if i < len(shape_hint) else 2])) for i in range(ndim))
    dtype = draw(dtypes)
    t = torch.randn(shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 2**16))))
    if t.numel() and draw(st.booleans()):
        t.view(-1)[draw(st.integers(0, t.numel() - 1))] = draw(special)
    if dtype in (torch.int64, torch.uint8):
        t = torch.nan_to_num(t, nan=0.0, posinf=255.0, neginf=0.0).clamp(0, 255) * 40
    return t.to(dtype)


TENSORS = {
    "sgan.dictionary": ("atoms", "mean"),
    "sgan.samples": ("images", "z", "codes"),
    "sgan.stats": ("features", "cov", "mean"),
    "sgan.generator": ("synthesis.atoms", "synthesis.mean"),
}


@SETTINGS
@given(data=st.data())
@pytest.mark.parametrize("kind", sorted(TENSORS))
def test_random_tensors_load_or_are_refused(valid, kind, data):
    metadata, tensors = parts(valid[kind])
    name = data.draw(st.sampled_from(TENSORS[kind]), label="tensor")
    if data.draw(st.booleans(), label="drop"):
        tensors.pop(name, None)
    else:
        tensors[name] = data.draw(tensors_like(tuple(tensors[name].shape)), label=name)
    loaded = loads_or_refuses(kind, metadata, tensors)
    if loaded is None:
        return
    if kind == "sgan.dictionary":  # what a load promises its users
        assert loaded.atoms.dtype == torch.float32 and bool(loaded.atoms.isfinite().all())
        assert torch.allclose(loaded.atoms.norm(dim=1), torch.ones(loaded.n_atoms), atol=1e-3)
        assert loaded.mean.shape == (loaded.atoms.shape[1],) and bool(loaded.mean.isfinite().all())
    if kind == "sgan.samples":
        assert loaded.images.dtype == torch.uint8 and loaded.images.ndim == 4


# ------------------------------------------------------------------ the config loader

recipe_values = st.one_of(
    json_values, st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**70), 2**70), numbers_as_text
)
field_names = {s: sorted(keys) for s, keys in CONFIG_KEYS["sgan.checkpoint"][2].items()}
field_names["dict"] = sorted(CONFIG_KEYS["sgan.dictionary"][2]["dict"])


@st.composite
def recipes(draw) -> object:
    sections = draw(st.lists(st.one_of(st.sampled_from(sorted(field_names)), text), max_size=3, unique=True))
    out = {}
    for s in sections:
        keys = st.one_of(st.sampled_from(field_names[s]), text) if s in field_names else text
        out[s] = draw(st.one_of(st.dictionaries(keys, recipe_values, max_size=4), recipe_values))
    return draw(st.one_of(st.just(out), recipe_values)) if draw(st.integers(0, 9)) == 0 else out


def _config_is_valid(cfg: SganConfig) -> None:
    check_ranges(cfg, ("data", "dict", "model", "gan", "recon", "train"), "test")
    for section in ("data", "dict", "model", "gan", "recon", "train"):
        for key, value in vars(getattr(cfg, section)).items():
            assert not (isinstance(value, float) and not math.isfinite(value)), f"{section}.{key} = {value}"


@SETTINGS
@given(recipe=recipes())
def test_random_recipes_load_or_are_refused(recipe):
    cfg = SganConfig()
    try:
        apply_mapping(cfg, recipe, "recipe test.yaml")
    except SganError as exc:
        assert "recipe test.yaml" in exc.message
        return
    _config_is_valid(cfg)


@SETTINGS
@given(recipe=recipes())
def test_random_recipe_files_load_or_are_refused(recipe):
    from sgan_cli.config import load_config

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.yaml"
        path.write_text(yaml.safe_dump(recipe, allow_unicode=True))
        try:
            cfg = load_config(path)
        except SganError:
            return
    _config_is_valid(cfg)


@SETTINGS
@given(
    key=st.one_of(st.sampled_from([f"{s}.{k}" for s, keys in field_names.items() for k in keys]), text),
    raw=st.one_of(text, numbers_as_text),
)
def test_random_set_values_load_or_are_refused(key, raw):
    cfg = SganConfig()
    try:
        dotted, value = parse_set(f"{key}={raw}")
        set_value(cfg, dotted, value, f"--set {key}={raw}")
    except SganError:
        return
    _config_is_valid(cfg)
