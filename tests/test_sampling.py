"""``sgan sample``: seeded latents, batch-size independence, EMA, dictionary swap, interpolation, errors."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from helpers import error_text, invoke

from sgan_cli.config import DataConfig, load_config
from sgan_cli.contracts import content_hash, read_file, write_file
from sgan_cli.data import load_data
from sgan_cli.errors import SganError
from sgan_cli.images import to_uint8
from sgan_cli.run_files import load_generator
from sgan_cli.sampling import LATENT_CHUNK, codes_decision, draw_latents, generate, interpolation_latents, lerp, slerp
from sgan_cli.training import run_training

FAST = [
    "train.log_every=2",
    "train.grid_every=100",
    "train.save_every=100",
    "model.g_width=32",
    "model.d_width=16",
    "model.e_width=8",
    "model.z_dim=8",
    "train.batch_size=16",
    "gan.critic_steps=1",
]


def _dictionary(path, atoms, channels=1, size=8, patch=None, stride=1, **meta):
    atoms = torch.nn.functional.normalize(atoms, dim=1)
    write_file(
        path,
        "sgan.dictionary",
        {"atoms": atoms},
        meta={
            "channels": str(channels),
            "image_size": str(size),
            "patch": json.dumps(patch),
            "stride": str(stride),
            **meta,
        },
    )
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three tiny runs on digits: whole-image sparse (with EMA), patch sparse (3×3, 6 atoms), dense."""
    root = tmp_path_factory.mktemp("runs")
    torch.manual_seed(0)
    whole = _dictionary(root / "whole.safetensors", torch.randn(32, 64))
    patch = _dictionary(root / "patch.safetensors", torch.randn(6, 9), patch=3)
    steps = ["train.steps=4"]
    run_training(
        load_config(None, [*FAST, *steps, f"train.dict={whole}", "model.arch=mlp", "train.ema=0.5"]), root / "whole"
    )
    run_training(load_config(None, [*FAST, *steps, f"train.dict={patch}", "model.arch=dcgan"]), root / "patch")
    run_training(load_config(None, [*FAST, *steps, "model.arch=dcgan"]), root / "dense")
    return {
        "root": root,
        "whole": root / "whole",
        "patch": root / "patch",
        "dense": root / "dense",
        "whole_dict": whole,
        "patch_dict": patch,
    }


# --- latents -----------------------------------------------------------------------------


def test_latents_depend_only_on_seed_and_index():
    n = 2 * LATENT_CHUNK + 600
    z = draw_latents(7, 0, n, 8)
    assert z.shape == (n, 8)
    assert torch.equal(draw_latents(7, 1000, 2500, 8), z[1000:2500])  # any window, across chunks
    assert torch.equal(draw_latents(7, 0, 10, 8), z[:10])  # -n 10 is the start of -n 2648
    assert not torch.equal(draw_latents(8, 0, 10, 8), z[:10])
    # standard normal: mean 0, variance 1 (16,000+ draws: 5σ bounds ≈ 0.04 / 0.06)
    assert abs(float(z.mean())) < 0.04 and abs(float(z.var()) - 1) < 0.06


def test_slerp_and_lerp_closed_forms():
    a, b = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 2.0, 0.0]])
    t = torch.tensor([0.0, 0.5, 1.0])
    s, l = slerp(a, b, t)[0], lerp(a, b, t)[0]
    assert torch.allclose(s[0], a[0]) and torch.allclose(s[2], b[0]) and torch.allclose(l[1], (a[0] + b[0]) / 2)
    # Ω = 90°: slerp(½) = (a + b)·sin(45°)/sin(90°)
    assert torch.allclose(s[1], (a[0] + b[0]) * math.sin(math.pi / 4), atol=1e-6)
    # parallel vectors (sin Ω = 0): slerp falls back to the linear path
    assert torch.allclose(slerp(a, 3 * a, t), lerp(a, 3 * a, t))


def test_interpolation_endpoints_are_the_samples_latents():
    z = draw_latents(3, 0, 6, 8)
    for mode in ("linear", "slerp"):
        path = interpolation_latents(3, 3, 5, 8, mode).view(3, 5, 8)
        assert torch.equal(path[:, 0], z[0::2]) and torch.equal(path[:, -1], z[1::2])
    with pytest.raises(SganError, match=r"interpolate \(points per pair, both ends\) must be at least 2, got 1"):
        interpolation_latents(3, 3, 1, 8, "linear")
    with pytest.raises(SganError, match="unknown interpolation 'cubic'"):
        interpolation_latents(3, 3, 4, 8, "cubic")


# --- generation --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["whole", "patch", "dense"])
def test_samples_do_not_depend_on_batch_size(runs, kind):
    """Bit for bit, codes included: a product's rounding depends on its number of rows, so G
    always runs on the same blocks (run with batches of 5 and 256, 6 of 20,000 images once
    differed by a grey level, and every code in its last bits)."""
    g = load_generator(runs[kind])
    n = 600 if kind == "whole" else 50
    z = draw_latents(0, 0, n, g.z_dim)
    ref_images, ref_codes, ref_support, _ = generate(g, z, 256)
    for bs in (1, 5, 7) if kind == "whole" else (1, 7):
        images, codes, support, _ = generate(g, z, bs)
        assert torch.equal(images, ref_images), bs
        if ref_codes is not None:
            assert torch.equal(codes, ref_codes), bs
            assert support == ref_support
    if kind == "dense":
        assert ref_codes is None and math.isnan(ref_support)
    else:
        # the images are exactly the dictionary synthesis of the codes (whole-image: a·D)
        assert 0 < ref_support <= 1 and ref_support == pytest.approx(float((ref_codes != 0).double().mean()))
        if kind == "whole":
            assert torch.equal(ref_images, to_uint8((ref_codes @ g.dictionary.atoms).view(-1, 1, 8, 8).clamp(-1, 1)))
        else:
            assert ref_codes.shape == (50, 6, 8, 8)


@pytest.mark.parametrize("kind", ["whole", "patch", "dense"])
def test_the_python_sample_gives_the_images_sgan_sample_writes(runs, kind):
    """sgan_cli.sample returns floats in [−1, 1]; rounded to uint8 they are generate()'s images."""
    import sgan_cli

    g = load_generator(runs[kind])
    images, *_ = generate(g, draw_latents(3, 0, 40, g.z_dim), 16)
    assert torch.equal(sgan_cli.to_uint8(sgan_cli.sample(g, 40, seed=3, batch_size=9)), images)


def test_codes_budget(runs):
    g = load_generator(runs["patch"])  # 6×8×8 floats = 1536 bytes per sample
    assert codes_decision(g, 100, "auto", budget=10**6) == (True, "stored")
    keep, note = codes_decision(g, 1000, "auto", budget=10**6)
    assert not keep and "exceed" in note and "--codes" in note
    assert codes_decision(g, 1000, "always", budget=10**6)[0]
    assert codes_decision(g, 10, "never") == (False, "omitted (--no-codes)")
    assert codes_decision(load_generator(runs["dense"]), 10, "always") == (False, "dense")


# --- the command -------------------------------------------------------------------------


def test_cli_sample_same_seed_same_images_any_batch_size(runner, runs, tmp_path):
    def sample(name, *args):
        res = invoke(runner, ["sample", str(runs["whole"]), "-n", "40", "--out", str(tmp_path / name), "--json", *args])
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout), read_file(tmp_path / name / "samples.safetensors", "sgan.samples")

    summary, a = sample("a", "--seed", "3", "--batch-size", "64")
    _, b = sample("b", "--seed", "3", "--batch-size", "6")
    _, c = sample("c", "--seed", "4")
    assert summary["n"] == 40 and summary["pngs"] == 40 and summary["codes"] == "stored"
    for name in ("images", "z", "codes"):
        assert torch.equal(a.tensors[name], b.tensors[name])
    assert not torch.equal(a.tensors["images"], c.tensors["images"])
    assert a.tensors["images"].dtype == torch.uint8 and a.tensors["images"].shape == (40, 1, 8, 8)
    assert a.tensors["codes"].shape == (40, 32) and a.tensors["z"].shape == (40, 8)
    # metadata: support over all samples, seed, lineage to the generator and its dictionary
    codes = a.tensors["codes"]
    assert float(a.meta["support_fraction"]) == pytest.approx(float((codes != 0).double().mean()))
    assert a.meta["seed"] == "3" and a.meta["ema"] == "false"
    g = read_file(runs["whole"] / "generator.safetensors", "sgan.generator")
    assert a.lineage == {"generator": content_hash(g.tensors), "dictionary": g.lineage["dictionary"]}
    # the numbered PNGs, read back as a folder of images, are exactly the stored images
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    for p in (tmp_path / "a").glob("0*.png"):
        shutil.copy(p, pngs)
    assert torch.equal(load_data(DataConfig(name=str(pngs))).images, a.tensors["images"])
    assert (tmp_path / "a" / "grid.png").exists()
    # the sample folder and samples.safetensors are data sets too (the folder through its file)
    assert torch.equal(load_data(DataConfig(name=str(tmp_path / "a"))).images, a.tensors["images"])
    assert torch.equal(
        load_data(DataConfig(name=str(tmp_path / "a" / "samples.safetensors"))).images, a.tensors["images"]
    )


def test_cli_sample_ema(runner, runs, tmp_path):
    res = invoke(
        runner,
        ["sample", str(runs["whole"]), "-n", "16", "--ema", "--out", str(tmp_path / "ema"), "--json", "--no-png"],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["ema"] is True
    got = read_file(tmp_path / "ema" / "samples.safetensors", "sgan.samples")
    assert got.meta["ema"] == "true" and not list(tmp_path.glob("ema/0*.png"))
    # the EMA weights differ from the live ones, and the images are theirs
    plain, ema = load_generator(runs["whole"]), load_generator(runs["whole"], ema=True)
    z = got.tensors["z"]
    assert torch.equal(got.tensors["images"], generate(ema, z, 16)[0])
    assert not torch.equal(got.tensors["images"], generate(plain, z, 16)[0])
    msg = error_text(invoke(runner, ["sample", str(runs["patch"]), "--ema", "--out", str(tmp_path / "x")]))
    assert "has no EMA weights" in msg and "(sgan train --ema 0.999)" in msg
    assert not (tmp_path / "x").exists()


def test_cli_dict_swap_accepted_when_the_shape_fits(runner, runs, tmp_path):
    torch.manual_seed(1)
    other = _dictionary(tmp_path / "other.safetensors", torch.randn(32, 64))
    res = invoke(
        runner, ["sample", str(runs["whole"]), "-n", "20", "--dict", str(other), "--out", str(tmp_path / "s"), "--json"]
    )
    assert res.exit_code == 0, res.output
    swapped = read_file(tmp_path / "s" / "samples.safetensors", "sgan.samples")
    atoms = read_file(other, "sgan.dictionary").tensors["atoms"]
    assert swapped.lineage["dictionary"] == content_hash({"atoms": atoms})
    # same body, same codes; the images are the codes through the new atoms
    plain = generate(load_generator(runs["whole"]), swapped.tensors["z"], 20)
    assert torch.allclose(swapped.tensors["codes"], plain[1], atol=1e-6)
    expected = to_uint8((swapped.tensors["codes"] @ atoms).view(-1, 1, 8, 8).clamp(-1, 1))
    assert (swapped.tensors["images"].int() - expected.int()).abs().max() <= 1
    assert not torch.equal(swapped.tensors["images"], plain[0])


@pytest.mark.parametrize(
    "kind, atoms, patch, message",
    [
        ("whole", 16, None, "it has 16 atoms but the generator emits 32 codes"),
        ("whole", 32, 3, "it has patch atoms but the generator uses whole-image atoms"),
        ("patch", 6, None, "it has whole-image atoms but the generator uses patch atoms"),
        ("dense", 32, None, "is dense (it paints pixels), so it has no dictionary to swap"),
    ],
)
def test_cli_dict_swap_refused_when_the_shape_does_not_fit(runner, runs, tmp_path, kind, atoms, patch, message):
    dim = 9 if patch else 64
    other = _dictionary(tmp_path / "other.safetensors", torch.randn(atoms, dim), patch=patch)
    msg = error_text(invoke(runner, ["sample", str(runs[kind]), "--dict", str(other), "--out", str(tmp_path / "s")]))
    assert message in msg and str(other) in msg
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("interp", ["linear", "slerp"])
def test_cli_interpolate(runner, runs, tmp_path, interp):
    res = invoke(
        runner,
        [
            "sample",
            str(runs["patch"]),
            "--interpolate",
            "5",
            "--interp",
            interp,
            "-n",
            "3",
            "--seed",
            "2",
            "--out",
            str(tmp_path / "i"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["pairs"] == 3 and summary["n"] == 15 and summary["pngs"] == 0
    assert (tmp_path / "i" / "interpolation.png").exists() and not (tmp_path / "i" / "grid.png").exists()
    got = read_file(tmp_path / "i" / "interpolation.safetensors", "sgan.samples")
    assert got.meta["interpolation"] == interp and got.meta["interpolate"] == "5"
    rows = got.tensors["images"].view(3, 5, 1, 8, 8)
    # endpoints are samples 2r and 2r + 1 of plain sampling with the same seed
    res = invoke(
        runner, ["sample", str(runs["patch"]), "-n", "6", "--seed", "2", "--out", str(tmp_path / "p"), "--no-png"]
    )
    plain = read_file(tmp_path / "p" / "samples.safetensors", "sgan.samples").tensors["images"]
    assert torch.equal(rows[:, 0], plain[0::2]) and torch.equal(rows[:, -1], plain[1::2])
    z = got.tensors["z"].view(3, 5, -1)
    t = torch.linspace(0, 1, 5)
    ref = (lerp if interp == "linear" else slerp)(z[:, 0], z[:, -1], t)
    assert torch.allclose(z, ref, atol=1e-6)
    # the folder reads as its 15 interpolation images (not as the one interpolation.png mosaic)
    assert torch.equal(load_data(DataConfig(name=str(tmp_path / "i"))).images, got.tensors["images"])


def test_cli_missing_or_wrong_files_are_refused(runner, runs, tmp_path):
    out = str(tmp_path / "s")
    msg = error_text(invoke(runner, ["sample", str(tmp_path / "nope.safetensors"), "--out", out]))
    assert "the generator file" in msg and "does not exist" in msg
    empty = tmp_path / "empty_run"
    empty.mkdir()
    msg = error_text(invoke(runner, ["sample", str(empty), "--out", out]))
    assert "holds no generator.safetensors" in msg and "sgan train" in msg
    msg = error_text(invoke(runner, ["sample", str(runs["whole_dict"]), "--out", out]))
    assert "is an sgan.dictionary file, but a sgan.generator file is needed" in msg
    msg = error_text(invoke(runner, ["sample", str(runs["whole"] / "critic.safetensors"), "--out", out]))
    assert "is an sgan.checkpoint file, but a sgan.generator file is needed" in msg
    text = tmp_path / "generator.safetensors"
    text.write_text("not a safetensors file")
    msg = error_text(invoke(runner, ["sample", str(text), "--out", out]))
    assert "not a readable safetensors file" in msg
    # weights that do not fit the architecture the config describes
    g = read_file(runs["whole"] / "generator.safetensors", "sgan.generator")
    config = json.loads(json.dumps(g.config))
    config["model"]["z_dim"] = 5
    bad = tmp_path / "bad" / "generator.safetensors"
    write_file(bad, "sgan.generator", g.tensors, config=config, lineage=g.lineage, meta=g.meta)
    msg = error_text(invoke(runner, ["sample", str(bad.parent), "--out", out]))
    assert "do not fit the architecture its config describes" in msg
    assert not (tmp_path / "s").exists()


def test_cli_outputs_are_not_overwritten_without_force(runner, runs, tmp_path):
    out = tmp_path / "s"
    assert invoke(runner, ["sample", str(runs["dense"]), "-n", "12", "--out", str(out)]).exit_code == 0
    before = (out / "samples.safetensors").read_bytes()
    msg = error_text(invoke(runner, ["sample", str(runs["dense"]), "-n", "5", "--seed", "1", "--out", str(out)]))
    assert "already exists" in msg and "--force" in msg
    assert (out / "samples.safetensors").read_bytes() == before
    (out / "samples.safetensors").unlink()
    (out / "grid.png").unlink()
    msg = error_text(invoke(runner, ["sample", str(runs["dense"]), "-n", "5", "--out", str(out)]))
    assert "already holds 12 numbered sample images" in msg
    # --force replaces everything: the folder then holds exactly the 5 new samples
    assert invoke(runner, ["sample", str(runs["dense"]), "-n", "5", "--out", str(out), "--force"]).exit_code == 0
    assert sorted(p.name for p in out.glob("*.png")) == [f"{i:06d}.png" for i in range(5)] + ["grid.png"]
    assert len(load_data(DataConfig(name=str(out)))) == 5


@pytest.mark.parametrize(
    "args, message",
    [
        (["-n", "0"], "-n must be at least 1"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--interpolate", "1"], "--interpolate must be at least 2, got 1"),
        (["--interpolate", "4", "--interp", "cubic"], "unknown interpolation 'cubic'"),
        (["--interp", "cubic"], "unknown interpolation 'cubic'"),
        (["--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_cli_bad_options(runner, runs, tmp_path, args, message):
    msg = error_text(invoke(runner, ["sample", str(runs["dense"]), "--out", str(tmp_path / "s"), *args]))
    assert message in msg
    assert not (tmp_path / "s" / "samples.safetensors").exists()
    assert not (tmp_path / "s").exists()  # refused before the folder is made


def test_cli_bad_option_with_force_keeps_the_old_outputs(runner, runs, tmp_path):
    out = tmp_path / "s"
    assert invoke(runner, ["sample", str(runs["dense"]), "-n", "5", "--out", str(out)]).exit_code == 0
    before = sorted(p.name for p in out.iterdir())
    msg = error_text(
        invoke(runner, ["sample", str(runs["dense"]), "-n", "5", "--out", str(out), "--force", "--batch-size", "0"])
    )
    assert "--batch-size must be at least 1" in msg
    assert sorted(p.name for p in out.iterdir()) == before


def test_cli_output_inside_a_file(runner, runs, tmp_path):
    (tmp_path / "afile").write_text("x")
    msg = error_text(
        invoke(runner, ["sample", str(runs["dense"]), "-n", "2", "--out", str(tmp_path / "afile" / "sub")])
    )
    assert "afile is a file" in msg


def test_cli_table_output(runner, runs, tmp_path):
    res = invoke(runner, ["sample", str(runs["patch"]), "-n", "4", "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert "images/s" in res.stdout and "6 3×3 patch atoms" in " ".join(res.stdout.split())
