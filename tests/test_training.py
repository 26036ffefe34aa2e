"""Training: every objective runs, resume is bit-exact, bad inputs give clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from sgan_cli.cli import app
from sgan_cli.config import load_config
from sgan_cli.contracts import read_file, write_file
from sgan_cli.errors import SganError
from sgan_cli.training import run_training

FAST = [
    "train.log_every=5",
    "train.grid_every=10",
    "train.save_every=10",
    "model.g_width=32",
    "model.d_width=16",
    "model.z_dim=8",
    "train.batch_size=16",
]


@pytest.fixture(scope="module")
def digits_dict(tmp_path_factory):
    """A small whole-image digits dictionary (32 atoms), learned once for the module."""
    from sgan_cli.config import DataConfig, DictConfig
    from sgan_cli.contracts import save_dictionary
    from sgan_cli.data import load_data
    from sgan_cli.dictionary_job import learn_from_config

    path = tmp_path_factory.mktemp("dict") / "dictionary.safetensors"
    job = learn_from_config(load_data(DataConfig(name="digits")), DictConfig(atoms=32, passes=2))
    save_dictionary(path, job, {})
    return path


def _cfg(*extra: str, steps: int = 6):
    return load_config(None, [*FAST, f"train.steps={steps}", *extra])


@pytest.mark.parametrize("objective", ["gan", "wgan", "wgan-gp", "hinge"])
@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_each_objective_runs_dense(tmp_path, objective, arch):
    res = run_training(_cfg(f"gan.objective={objective}", f"model.arch={arch}", "gan.critic_steps=2"), tmp_path / "run")
    assert res.steps == 6 and not res.sparse
    lines = [json.loads(s) for s in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in lines] == [5, 6]
    g = read_file(tmp_path / "run" / "generator.safetensors", "sgan.generator")
    assert g.config["gan"]["objective"] == objective


def test_sparse_generator_records_support_and_lineage(tmp_path, digits_dict):
    res = run_training(_cfg(f"train.dict={digits_dict}", "model.arch=mlp"), tmp_path / "run")
    assert res.sparse and 0.0 <= res.last_log["support"] <= 1.0
    g = read_file(tmp_path / "run" / "generator.safetensors", "sgan.generator")
    assert g.lineage["dictionary"].startswith("sha256:")
    assert (tmp_path / "run" / "grids" / "step-000006.png").exists()


def _weights(path):
    return read_file(path, "sgan.checkpoint").tensors


@pytest.mark.parametrize(
    "options",
    [
        ("model.arch=mlp",),
        # the support controller: λ (its state) resumes with the generator
        ("model.arch=mlp", "model.sparsity=controller"),
        # the third player, an EMA and feature matching: their nets, optimisers and draws resume too
        ("model.arch=mlp", "recon.mode=latent", "recon.steps=2", "train.ema=0.9", "gan.feature_matching=1.0"),
        ("model.arch=mlp", "recon.mode=vae"),
        # conv critic and encoder: channels-last parameters on CPU, Adam states reloaded in their layout
        ("model.arch=dcgan", "model.d_width=8", "model.e_width=8", "recon.mode=latent"),
        # mixed precision resumes bit for bit as well
        ("model.arch=dcgan", "model.d_width=8", "train.precision=bf16"),
        # Goyal's critic: its dropout masks come from streams the checkpoint carries
        ("model.arch=goyal", "model.d_width=8", "model.e_width=8", "recon.mode=latent"),
        # packing (PacGAN): the packed critic, its per-pack ε and feature matching over packs
        ("model.arch=dcgan", "model.d_width=8", "model.pack=2", "gan.feature_matching=1.0", "recon.mode=latent"),
    ],
    ids=["plain", "controller", "recon-ema-fm", "vae", "conv", "bf16", "goyal-dropout", "packed"],
)
def test_resume_is_bit_exact(tmp_path, digits_dict, options):
    extra = (f"train.dict={digits_dict}", "gan.objective=wgan-gp", "gan.critic_steps=2", *options)
    run_training(_cfg(*extra, steps=12), tmp_path / "straight")
    run_training(_cfg(*extra, steps=6), tmp_path / "split")
    run_training(_cfg(*extra, steps=12), tmp_path / "split", resume=True)
    a, b = (
        _weights(tmp_path / "straight" / "checkpoint.safetensors"),
        _weights(tmp_path / "split" / "checkpoint.safetensors"),
    )
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_existing_run_needs_resume_or_force(tmp_path):
    run_training(_cfg(steps=2), tmp_path / "run")
    with pytest.raises(SganError, match="already holds a run.*--resume"):
        run_training(_cfg(steps=2), tmp_path / "run")
    run_training(_cfg(steps=2), tmp_path / "run", force=True)


def test_dictionary_and_data_of_different_sizes(tmp_path):
    atoms = torch.nn.functional.normalize(torch.randn(10, 784), dim=1)
    path = tmp_path / "mnist_dict.safetensors"
    write_file(
        path,
        "sgan.dictionary",
        {"atoms": atoms},
        meta={"channels": "1", "image_size": "28", "patch": "null", "stride": "1"},
    )
    with pytest.raises(SganError, match="28×28, but the data is 8×8"):
        run_training(_cfg(f"train.dict={path}"), tmp_path / "run")


def test_cli_errors(runner, tmp_path):
    res = runner.invoke(app, ["train", "--dict", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "does not exist" in res.stderr
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("train:\n  stepz: 3\n")
    res = runner.invoke(app, ["train", "--recipe", str(recipe), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "train.stepz" in res.stderr and str(recipe) in " ".join(res.stderr.split())
    res = runner.invoke(app, ["train", "--gan", "lsgan", "--out", str(tmp_path / "r"), "--steps", "1"])
    assert res.exit_code == 2 and "unknown objective 'lsgan'" in res.stderr


def test_cli_dry_run_prints_resolved_config(runner, tmp_path):
    res = runner.invoke(app, ["train", "--gan", "hinge", "--steps", "7", "--dry-run", "--json"])
    assert res.exit_code == 0
    cfg = json.loads(res.stdout)
    assert cfg["gan"]["objective"] == "hinge" and cfg["train"]["steps"] == 7


def test_nan_loss_stops_with_message_and_keeps_checkpoint(tmp_path, monkeypatch):
    import sgan_cli.training as tr

    run_training(_cfg(steps=10), tmp_path / "run")  # a good checkpoint at step 10
    real_loss = tr.critic_loss
    calls = {"n": 0}

    def poisoned(objective, real, fake):
        calls["n"] += 1
        loss = real_loss(objective, real, fake)
        return loss * float("nan") if calls["n"] > 20 else loss

    monkeypatch.setattr(tr, "critic_loss", poisoned)
    with pytest.raises(SganError, match="NaN or inf"):
        run_training(_cfg(steps=30), tmp_path / "run", resume=True)
    ckpt = read_file(tmp_path / "run" / "checkpoint.safetensors", "sgan.checkpoint")
    assert ckpt.meta["step"] == "10"
    assert all(torch.isfinite(t).all() for t in ckpt.tensors.values() if t.is_floating_point())


def test_interrupt_inside_an_iteration_saves_nothing_half_done(tmp_path, monkeypatch):
    """A KeyboardInterrupt in the middle of an iteration (a second Ctrl-C) must not checkpoint
    the half-updated nets: a new run leaves no folder, a resumed one keeps its last checkpoint."""
    import sgan_cli.training as tr

    real_loss = tr.generator_loss
    calls = {"n": 0}

    def interrupt(objective, scores):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_loss(objective, scores)

    monkeypatch.setattr(tr, "generator_loss", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_training(_cfg(steps=8), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    monkeypatch.setattr(tr, "generator_loss", real_loss)
    run_training(_cfg(steps=10), tmp_path / "run2")  # checkpoint at 10
    calls["n"] = 0
    monkeypatch.setattr(tr, "generator_loss", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_training(_cfg(steps=20), tmp_path / "run2", resume=True)
    assert read_file(tmp_path / "run2" / "checkpoint.safetensors", "sgan.checkpoint").meta["step"] == "10"


def test_model_errors(tmp_path):
    with pytest.raises(SganError, match="unknown architecture 'resnet50'"):
        run_training(_cfg("model.arch=resnet50"), tmp_path / "a")
    with pytest.raises(SganError, match="unknown critic architecture 'vit'"):
        run_training(_cfg("model.critic_arch=vit"), tmp_path / "a")
    with pytest.raises(SganError, match="BatchNorm in a WGAN-GP critic"):
        run_training(_cfg("gan.objective=wgan-gp", "model.critic_norm=batch"), tmp_path / "b")
    atoms = torch.nn.functional.normalize(torch.randn(6, 9), dim=1)
    patches = tmp_path / "patch_dict.safetensors"
    write_file(
        patches,
        "sgan.dictionary",
        {"atoms": atoms},
        meta={"channels": "1", "image_size": "8", "patch": "3", "stride": "1"},
    )
    with pytest.raises(SganError, match="patch dictionary needs a convolutional generator"):
        run_training(_cfg(f"train.dict={patches}", "model.arch=mlp"), tmp_path / "c")
    res = run_training(_cfg(f"train.dict={patches}", "model.arch=dcgan", steps=2), tmp_path / "d")
    assert res.sparse


def test_resume_without_a_run(tmp_path):
    with pytest.raises(SganError, match="no run to resume in .*no checkpoint.safetensors"):
        run_training(_cfg(steps=2), tmp_path / "nothing", resume=True)
    assert not (tmp_path / "nothing").exists()


def test_reconstructor_lowers_latent_error(tmp_path, digits_dict):
    """Algorithm 1's encoder steps make E a left inverse of G: ‖E(G(z)) − z‖ falls well below
    that of the same encoder untrained, on the final generator."""
    from sgan_cli.builders import Geometry, build_encoder, build_generator
    from sgan_cli.config import ModelConfig
    from sgan_cli.contracts import load_dictionary
    from sgan_cli.run_folder import config_json

    # T_λ at a fixed λ (dense-ish codes): the encoder's learning, not the sparsity control, is tested here
    cfg = _cfg(
        f"train.dict={digits_dict}",
        "model.arch=mlp",
        "model.sparsity=fixed",
        "model.z_dim=4",
        "recon.mode=latent",
        "recon.steps=5",
        "recon.lr=1e-3",
        steps=80,
    )
    run_training(cfg, tmp_path / "run")
    rec = read_file(tmp_path / "run" / "reconstructor.safetensors", "sgan.checkpoint")
    assert rec.meta["role"] == "reconstructor" and rec.meta["recon_mode"] == "latent"
    assert rec.lineage["dictionary"].startswith("sha256:")
    model = ModelConfig(**rec.config["model"])
    geo = Geometry(1, 8)
    G = build_generator(model, geo, load_dictionary(digits_dict)).eval()
    G.load_state_dict(read_file(tmp_path / "run" / "generator.safetensors", "sgan.generator").tensors)
    trained = build_encoder(model, geo, "latent").eval()
    trained.load_state_dict({k[len("encoder.") :]: v for k, v in rec.tensors.items()})
    torch.manual_seed(0)
    fresh = build_encoder(model, geo, "latent").eval()
    z = torch.randn(256, model.z_dim, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        x = G(z)
        err_trained = (trained(x) - z).norm(dim=1).mean()
        err_fresh = (fresh(x) - z).norm(dim=1).mean()
    assert err_trained < 0.8 * err_fresh, (err_trained, err_fresh)
    lines = [json.loads(s) for s in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["recon_e"] < lines[0]["recon_e"] and "recon_g" in lines[-1]
    assert config_json(cfg)["recon"]["mode"] == "latent"


@pytest.mark.parametrize(
    "options",
    [
        ("model.arch=resnet",),
        ("model.arch=dcgan", "model.minibatch_disc=8"),
        ("model.arch=mlp", "gan.feature_matching=1.0", "gan.objective=gan"),
        ("model.arch=dcgan", "recon.mode=vae", "train.ema=0.5"),
        ("model.arch=resnet", "recon.mode=latent"),
        ("model.arch=dcgan", "model.critic_arch=mlp", "recon.mode=latent"),
    ],
)
def test_options_run_dense(tmp_path, options):
    res = run_training(_cfg(*options, "gan.critic_steps=1", steps=3), tmp_path / "run")
    assert res.steps == 3 and all(math.isfinite(v) for v in res.last_log.values())


def test_ema_generator_in_file(tmp_path, digits_dict):
    run_training(_cfg(f"train.dict={digits_dict}", "model.arch=mlp", "train.ema=0.5", steps=4), tmp_path / "run")
    g = read_file(tmp_path / "run" / "generator.safetensors", "sgan.generator")
    assert g.meta["ema"] == "true"
    raw = {k: v for k, v in g.tensors.items() if not k.startswith("ema.")}
    ema = {k[4:]: v for k, v in g.tensors.items() if k.startswith("ema.")}
    assert raw.keys() == ema.keys()
    assert torch.equal(raw["synthesis.atoms"], ema["synthesis.atoms"])  # buffers are copied
    assert not torch.equal(raw["body.net.0.weight"], ema["body.net.0.weight"])  # parameters averaged


def test_ema_update_closed_form():
    from sgan_cli.nets import Generator as Gen
    from sgan_cli.nets import MLPBody
    from sgan_cli.training import _update_ema

    torch.manual_seed(0)
    g, e = Gen(MLPBody(4, 8, 8), image_shape=(2, 2, 2)), Gen(MLPBody(4, 8, 8), image_shape=(2, 2, 2))
    before = [p.clone() for p in e.parameters()]
    _update_ema(e, g, 0.9)
    for p0, pe, p in zip(before, e.parameters(), g.parameters()):
        assert torch.allclose(pe, 0.9 * p0 + 0.1 * p)


def test_resume_refuses_options_it_would_ignore(runner, tmp_path):
    out = tmp_path / "run"
    common = ["--steps", "2", "--set", "model.g_width=16", "--set", "model.d_width=8", "--set", "train.batch_size=8"]
    assert runner.invoke(app, ["train", "--out", str(out), *common]).exit_code == 0
    res = runner.invoke(app, ["train", "--out", str(out), "--resume", "--steps", "3", "--gan", "hinge"])
    assert res.exit_code == 2 and "--gan would be ignored" in " ".join(res.stderr.split())
    res = runner.invoke(app, ["train", "--out", str(out), "--resume", "--steps", "3"])
    assert res.exit_code == 0, res.stderr


def test_cli_recon_flag_forms(runner):
    for args, mode in (
        (["--recon"], "latent"),
        (["--recon", "vae"], "vae"),
        (["--recon", "--gan", "gan"], "latent"),
        ([], "none"),
    ):
        res = runner.invoke(app, ["train", *args, "--dry-run", "--json"])
        assert res.exit_code == 0, res.stderr
        assert json.loads(res.stdout)["recon"]["mode"] == mode
    res = runner.invoke(app, ["train", "--set", "recon.mode=gibbs", "--dry-run"])
    assert res.exit_code == 2 and "unknown reconstructor mode 'gibbs'" in res.stderr


@pytest.mark.parametrize("recipe", sorted(p.name for p in (Path(__file__).parent.parent / "recipes").glob("*.yaml")))
def test_every_recipe_passes_dry_run(runner, recipe):
    """`sgan train --recipe R --dry-run` resolves every recipe, and the recipe's values win."""
    import yaml

    path = Path(__file__).parent.parent / "recipes" / recipe
    res = runner.invoke(app, ["train", "--recipe", str(path), "--dry-run", "--no-estimate", "--json"])
    assert res.exit_code == 0, res.stderr
    assert "estimate:" not in res.stderr  # tested on its own: a step of the GPU recipes takes a minute here
    resolved = json.loads(res.stdout)
    for section, values in yaml.safe_load(path.read_text()).items():
        for key, value in values.items():
            if section in resolved:
                assert resolved[section][key] == value, (section, key)


@pytest.mark.parametrize(
    "options",
    [
        ("recon.mode=latent",),
        ("recon.mode=vae", "gan.objective=gan"),
        ("gan.objective=wgan", "gan.critic_steps=2"),
        ("gan.objective=gan",),
        # conv critic and encoder: the first-order gradient penalty through convolutions, channels-last
        ("model.arch=dcgan", "recon.mode=latent", "model.e_width=8"),
    ],
)
def test_fast_loop_computes_the_same_losses_as_the_eager_reference(digits_dict, options):
    """Speed must not change the maths: from the same state and draws, sgan's loop and the
    plain eager loop of benchmarks/eager_reference.py give the same losses."""
    import copy
    import sys

    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    from eager_reference import eager_steps, plain_nets, plain_optimizers

    from sgan_cli.builders import Geometry
    from sgan_cli.checkpoint import new_state
    from sgan_cli.config import DataConfig
    from sgan_cli.contracts import load_dictionary
    from sgan_cli.data import load_data
    from sgan_cli.training import train_steps

    # the controlled soft threshold: continuous in the weights, so float-rounding differences
    # between the two loops stay small (top-k could flip a near-tie and amplify them); likewise
    # unclipped images: a pixel that rounding moves across ±1 switches its gradient on or off
    # (recon_g 5e-3 apart after 4 steps with clipping and straight-through gradients). Both are
    # inside the generator, which the two loops share, so the loops' maths is still compared.
    cfg = _cfg(
        f"train.dict={digits_dict}",
        "model.arch=mlp",
        "model.sparsity=controller",
        "model.clip_images=false",
        "train.log_every=1",
        *options,
    )
    real = load_data(DataConfig(name="digits")).floats()
    ours = new_state(cfg, Geometry(1, 8), load_dictionary(digits_dict), torch.device("cpu"))
    ref = copy.deepcopy(ours)
    plain_nets(ref)  # the plain loop in PyTorch's default layout
    logged: list[dict] = []
    train_steps(ours, cfg, real, 4, on_log=logged.append)
    expected = eager_steps(ref, cfg, real, 4, plain_optimizers(ref, cfg))
    for got, want in zip(logged, expected):
        for k, v in want.items():
            # abs: losses near 0 are differences of critic means; float32 convolutions in another
            # memory layout round differently with the thread count (1.1e-5 seen with 1 thread)
            assert got[k] == pytest.approx(v, rel=1e-4, abs=3e-5), (k, got[k], v)


def test_train_config_errors_name_the_key(runner):
    for setting, message in (
        ("train.ema=1.5", "train.ema must be in [0, 1)"), ("recon.every=0", "recon.every must be at least 1"),
        ("gan.feature_matching=-1", "gan.feature_matching must be at least 0"),
        # intervals of 0 used to end in a ZeroDivisionError traceback
        ("train.log_every=0", "train.log_every must be at least 1"),
        ("train.save_every=0", "train.save_every must be at least 1"),
        ("train.grid_every=-1", "train.grid_every must be at least 1"),
        ("model.z_dim=0", "model.z_dim must be in [1, 65536], got 0"),
        ("model.threshold=-1", "model.threshold must be at least 0"),
        ("gan.gp_lambda=-1", "gan.gp_lambda must be at least 0"),
    ):  # fmt: skip
        res = runner.invoke(app, ["train", "--set", setting, "--dry-run"])
        assert res.exit_code == 2 and message in " ".join(res.stderr.split()), (setting, res.stderr)
        assert "Traceback" not in res.output


def test_bf16_mixed_precision_tracks_fp32_and_keeps_fp32_weights(digits_dict):
    """train.precision=bf16 runs the forward passes in bfloat16: from the same state and
    draws its first losses are fp32's to bf16 accuracy (not bit-equal: bf16 really ran),
    while weights, optimiser states and the logged losses stay fp32."""
    import copy

    from sgan_cli.builders import Geometry
    from sgan_cli.checkpoint import new_state
    from sgan_cli.config import DataConfig
    from sgan_cli.contracts import load_dictionary
    from sgan_cli.data import load_data
    from sgan_cli.training import train_steps

    opts = (
        f"train.dict={digits_dict}",
        "model.arch=dcgan",
        "recon.mode=latent",
        "model.e_width=8",
        "train.log_every=1",
        "gan.critic_steps=2",
    )
    real = load_data(DataConfig(name="digits")).floats()
    cfg32, cfg16 = _cfg(*opts), _cfg(*opts, "train.precision=bf16")
    s32 = new_state(cfg32, Geometry(1, 8), load_dictionary(digits_dict), torch.device("cpu"))
    s16 = copy.deepcopy(s32)
    log32: list[dict] = []
    log16: list[dict] = []
    train_steps(s32, cfg32, real, 1, on_log=log32.append)
    train_steps(s16, cfg16, real, 1, on_log=log16.append)
    keys = ("loss_d", "loss_g", "gp", "l1", "recon_e", "recon_g")
    for k in keys:
        assert log16[0][k] == pytest.approx(log32[0][k], rel=0.05, abs=0.02), (k, log16[0][k], log32[0][k])
    assert any(log16[0][k] != log32[0][k] for k in keys)
    for state in (s16,):
        for module in state.modules().values():
            assert all(p.dtype == torch.float32 for p in module.parameters())
        for opt in state.optimizers().values():
            assert all(v.dtype == torch.float32 for st in opt.state.values() for v in st.values() if v.dim() > 0)


def test_precision_setting(runner):
    from sgan_cli.precision import native_bf16, resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None and resolve_precision("bf16", cpu) is torch.bfloat16
    assert resolve_precision("auto", cpu) is (torch.bfloat16 if native_bf16(cpu) else None)
    res = runner.invoke(app, ["train", "--precision", "bf16", "--dry-run", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["train"]["precision"] == "bf16"
    res = runner.invoke(app, ["train", "--precision", "half", "--dry-run"])
    assert (
        res.exit_code == 2
        and "unknown precision 'half'" in res.stderr
        and "fp32, bf16 or auto" in " ".join(res.stderr.split())
    )
    assert "Traceback" not in res.output


def test_recon_gap_measures_how_far_the_encoder_lags_and_leaves_the_run_alone(digits_dict):
    """recon_gap: a copy of E trained 25 more steps on the frozen G. Large for a fresh E, small
    for one already fitted to this G; recon_heldout is ‖E(G(z)) − z‖² on its held-out z; and the
    run's state (nets, optimisers, G's BatchNorm buffers, the RNG) is exactly as before."""
    from sgan_cli.builders import Geometry
    from sgan_cli.checkpoint import new_state, state_tensors
    from sgan_cli.contracts import load_dictionary
    from sgan_cli.losses import latent_recon_loss
    from sgan_cli.reconstructor import reconstructor_gap

    cfg = _cfg(f"train.dict={digits_dict}", "model.arch=mlp", "model.z_dim=4", "recon.mode=latent")
    cpu = torch.device("cpu")
    state = new_state(cfg, Geometry(1, 8), load_dictionary(digits_dict), cpu)
    snapshot = {k: v.clone() for k, v in state_tensors(state)[0].items()}
    fresh = reconstructor_gap(state, cfg, cpu, None)
    for k, v in state_tensors(state)[0].items():
        assert torch.equal(v, snapshot[k]), k
    held = torch.randn(4 * 16, 4, generator=torch.Generator().manual_seed(cfg.train.seed * 1_000_003 + state.step))
    with torch.no_grad():
        expected = float(latent_recon_loss(state.encoder(state.generator(held)), held))
    assert fresh["recon_heldout"] == pytest.approx(expected, rel=1e-6)
    # fit E to this G (the run's own encoder optimiser), then the copy has little left to gain
    gen = torch.Generator().manual_seed(9)
    for _ in range(400):
        z = torch.randn(16, 4, generator=gen)
        with torch.no_grad():
            x = state.generator(z)
        loss = latent_recon_loss(state.encoder(x), z)
        state.opt_e.zero_grad()
        loss.backward()
        state.opt_e.step()
    fitted = reconstructor_gap(state, cfg, cpu, None)
    assert fitted["recon_heldout"] < 0.7 * fresh["recon_heldout"]
    assert fresh["recon_gap"] > 0.03 and abs(fitted["recon_gap"]) < 0.5 * fresh["recon_gap"], (fresh, fitted)
