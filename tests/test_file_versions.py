"""Files from another sgan, and files whose parts disagree (issue 25, kinds 3 and 4).

Every file records the sgan version and schema that wrote it; a reader refuses a newer schema
or a configuration key it does not know, naming both versions, and checks that metadata,
configuration and tensors tell one story.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import yaml
from helpers import error_text, invoke
from safetensors import safe_open
from safetensors.torch import save_file

from sgan_cli import __version__
from sgan_cli.classifier import ClassifierConfig
from sgan_cli.config import DataConfig, DictConfig, GanConfig, ModelConfig, ReconConfig, TrainConfig
from sgan_cli.contracts import read_file
from sgan_cli.schemas import CONFIG_KEYS, FREE, SCHEMAS

TINY = ["--arch", "mlp", "--batch-size", "8", "--set", "model.g_width=16", "--set", "model.d_width=8"]
TINY += ["--set", "model.z_dim=4"]

SECTIONS = {
    "data": DataConfig,
    "dict": DictConfig,
    "model": ModelConfig,
    "gan": GanConfig,
    "recon": ReconConfig,
    "train": TrainConfig,
    "classifier": ClassifierConfig,
}


def rewrite(path, *, meta=None, config=None, drop=(), tensors=None):
    """The file again with some metadata, configuration or tensors changed (as another sgan,
    or damage, would leave it)."""
    with safe_open(str(path), "pt") as f:
        metadata = dict(f.metadata())
        t = {k: f.get_tensor(k) for k in f.keys() if k not in drop}
    metadata.update(meta or {})
    if config is not None:
        metadata["config"] = json.dumps(config(json.loads(metadata["config"])))
    t.update(tensors or {})
    save_file(t, str(path), metadata=metadata)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from typer.testing import CliRunner

    root = tmp_path_factory.mktemp("files")
    runner = CliRunner()
    d = root / "dictionary.safetensors"
    assert invoke(runner, ["learn-dict", "digits", "--limit", "300", "--atoms", "16", "--out", str(d)]).exit_code == 0
    res = invoke(runner, ["train", "--out", str(root / "run"), "--dict", str(d), "--steps", "2", *TINY])
    assert res.exit_code == 0, res.output
    return {"root": root, "dict": d, "run": root / "run"}


def drop_schema_3_keys(config):
    """The configuration as a generator or checkpoint of schema 1 or 2 recorded it."""
    keys = ("clip_images", "straight_through")
    return {**config, "model": {k: v for k, v in config["model"].items() if k not in keys}}


def copy(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())
    return dst


# ------------------------------------------------------------------ the record of config keys


def test_every_config_field_is_recorded_under_the_current_schema():
    """Adding a config field changes what files mean: bump the schema of each kind that records
    it (sgan_cli/schemas.py SCHEMAS) and record the new key set under the new number."""
    for kind, by_schema in CONFIG_KEYS.items():
        recorded = by_schema[SCHEMAS[kind]]
        for section, keys in recorded.items():
            if keys is FREE:
                continue
            fields = frozenset(f.name for f in dataclasses.fields(SECTIONS[section]))
            assert keys == fields, (
                f"{kind} schema {SCHEMAS[kind]} records {section} keys {sorted(keys ^ fields)} differently from "
                "the config: bump SCHEMAS[kind] and record the new keys in CONFIG_KEYS"
            )
        assert set(by_schema) >= {SCHEMAS[kind]}


def test_files_say_which_sgan_and_schema_wrote_them(files):
    run = files["run"]
    for name in ("checkpoint.safetensors", "generator.safetensors", "critic.safetensors"):
        f = read_file(run / name, ("sgan.checkpoint", "sgan.generator"))
        assert f.sgan_version == __version__ and f.schema == SCHEMAS[f.kind] == 3
    first = (run / "config.yaml").read_text().splitlines()[0]
    assert first == f"# written by sgan {__version__}, sgan.checkpoint schema 3"
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["steps"] == 2


# ------------------------------------------------------------------ kind 3: files of a newer sgan


def test_a_dictionary_of_a_newer_schema_is_refused_naming_both_versions(runner, files, tmp_path):
    d = copy(files["dict"], tmp_path / "new.safetensors")
    rewrite(d, meta={"schema": "3", "sgan_version": "9.1.0"})
    msg = error_text(invoke(runner, ["encode", "digits", "--dict", str(d), "--out", str(tmp_path / "l.safetensors")]))
    assert f"{d} is an sgan.dictionary file of schema '3', written by sgan 9.1.0" in msg
    assert f"this sgan ({__version__}) reads schema 1 and 2 (it is from a newer sgan)" in msg
    assert "read it with sgan 9.1.0 or a newer one" in msg
    assert not (tmp_path / "l.safetensors").exists()


def test_a_config_key_of_a_newer_sgan_is_refused_not_dropped(runner, files, tmp_path):
    """Resume used to drop the key, train and rewrite checkpoint and config.yaml without it."""
    run = tmp_path / "run"
    for p in files["run"].iterdir():
        if p.is_file():
            copy(p, run / p.name)
    ckpt = run / "checkpoint.safetensors"
    rewrite(ckpt, meta={"sgan_version": "9.1.0"}, config=lambda c: {**c, "train": {**c["train"], "cosine_lr": True}})
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    msg = error_text(invoke(runner, ["train", "--out", str(run), "--resume", "--steps", "4"]))
    assert f"{ckpt} holds configuration this sgan ({__version__}) does not know (train.cosine_lr)" in msg
    assert "written by sgan 9.1.0 under schema 3 of sgan.checkpoint" in msg
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    # sample refuses such a generator too (a new section counts as well)
    gen = run / "generator.safetensors"
    rewrite(gen, config=lambda c: {**c, "augment": {"flip": True}})
    msg = error_text(invoke(runner, ["sample", str(gen), "-n", "4", "--out", str(tmp_path / "s")]))
    assert "does not know (augment)" in msg


def test_an_older_checkpoint_schema_still_resumes(runner, files, tmp_path):
    run = tmp_path / "run"
    for p in files["run"].iterdir():
        if p.is_file():
            copy(p, run / p.name)
    rewrite(
        run / "checkpoint.safetensors",
        meta={"schema": "1", "sgan_version": "0.0.9"},
        config=drop_schema_3_keys,
    )
    res = invoke(runner, ["train", "--out", str(run), "--resume", "--steps", "3"])
    assert res.exit_code == 0, res.output
    f = read_file(run / "checkpoint.safetensors", "sgan.checkpoint")
    assert f.schema == 3  # rewritten by this sgan
    assert f.config["model"]["clip_images"] is False  # and still the unclipped run it was


def test_generators_from_before_clip_images_synthesise_unclipped_images(files, tmp_path):
    """Schema-2 files lack model.clip_images: they load with it false and give the images they
    gave before; files of this sgan clip codes × atoms to [−1, 1]."""
    from sgan_cli.api import load_generator, sample

    new = files["run"] / "generator.safetensors"
    assert read_file(new, "sgan.generator").config["model"]["clip_images"] is True
    old = copy(new, tmp_path / "old.safetensors")

    rewrite(old, meta={"schema": "2"}, config=drop_schema_3_keys)
    g_new, g_old = load_generator(new), load_generator(old)
    assert g_new.module.synthesis.clip and not g_old.module.synthesis.clip
    z = torch.randn(256, g_new.z_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        clipped, unclipped = g_new.module(z), g_old.module(z)
    assert clipped.min() >= -1 and clipped.max() <= 1
    assert unclipped.min() < -1 or unclipped.max() > 1  # codes × atoms + mean leave the range
    assert torch.equal(unclipped.clamp(-1, 1), clipped)
    assert torch.equal(sample(g_old, n=8, seed=3), sample(g_new, n=8, seed=3))  # samples were always clipped
    # a schema-3 file must record the key (it would otherwise fall back to a default unnoticed)
    bad = copy(new, tmp_path / "bad.safetensors")
    rewrite(bad, config=drop_schema_3_keys)
    with pytest.raises(Exception, match=r"its configuration lacks model\.clip_images"):
        read_file(bad, "sgan.generator")


# ------------------------------------------------------------------ kind 4: parts that disagree


def test_a_dictionary_that_promises_a_mean_it_lacks_is_refused(runner, files, tmp_path):
    """It loaded with a zero mean and encoded at 10 dB instead of 21, without a word."""
    d = copy(files["dict"], tmp_path / "d.safetensors")
    assert read_file(d, "sgan.dictionary").config["dict"]["mean"] is True
    rewrite(d, drop=("mean",))
    msg = error_text(invoke(runner, ["encode", "digits", "--dict", str(d), "--out", str(tmp_path / "l.safetensors")]))
    assert f"{d}: its configuration says the atoms were learned with a mean (dict.mean), but it holds no mean" in msg
    # the other way round: learned without a mean, yet holding one
    copy(files["dict"], d)
    rewrite(d, config=lambda c: {**c, "dict": {**c["dict"], "mean": False}})
    msg = error_text(invoke(runner, ["encode", "digits", "--dict", str(d), "--out", str(tmp_path / "l.safetensors")]))
    assert "learned without a mean (dict.mean), but it holds one" in msg


def test_a_sparse_generator_of_schema_3_without_its_mean_is_refused(runner, files, tmp_path):
    gen = copy(files["run"] / "generator.safetensors", tmp_path / "g.safetensors")
    rewrite(gen, drop=("synthesis.mean",))
    msg = error_text(invoke(runner, ["sample", str(gen), "-n", "4", "--out", str(tmp_path / "s")]))
    assert "a sparse generator of schema 3 without its dictionary's mean (synthesis.mean)" in msg
    assert not (tmp_path / "s").exists()


def test_samples_whose_codes_are_nan_are_not_scored(runner, files, tmp_path):
    """Their sparsity used to be reported, exit 0."""
    out = tmp_path / "s"
    assert invoke(runner, ["sample", str(files["run"]), "-n", "6", "--out", str(out)]).exit_code == 0
    samples = out / "samples.safetensors"
    codes = read_file(samples, "sgan.samples").tensors["codes"].clone()
    codes[2, 0] = float("nan")
    rewrite(samples, tensors={"codes": codes})
    msg = error_text(invoke(runner, ["score", str(out), "--metric", "sparsity"]))
    assert f"{samples}: tensor 'codes' holds NaN or infinite values" in msg
    codes[2, 0] = float("inf")
    rewrite(samples, tensors={"codes": codes})
    assert "holds NaN or infinite values" in error_text(invoke(runner, ["score", str(samples), "-m", "sparsity"]))
    # images intact, codes fine again: scored
    codes[2, 0] = 0.0
    rewrite(samples, tensors={"codes": codes})
    assert invoke(runner, ["score", str(samples), "--metric", "sparsity"]).exit_code == 0


def test_generator_ema_tensors_agree_with_its_metadata(files, tmp_path):
    from sgan_cli.errors import SganError

    gen = copy(files["run"] / "generator.safetensors", tmp_path / "g.safetensors")
    assert read_file(gen, "sgan.generator").meta["ema"] == "false"
    rewrite(gen, tensors={"ema.synthesis.mean": torch.zeros(64)})
    with pytest.raises(SganError, match="it says it holds no EMA weights, but has 'ema.' tensors"):
        read_file(gen, "sgan.generator")
