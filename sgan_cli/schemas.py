"""File schemas: each kind's schema number, the older ones still read, and the configuration
keys a file of each schema may hold.

A file records the sgan version and the schema that wrote it (``sgan_version``, ``schema``).
A reader refuses a schema newer than its own, and a configuration key it does not know: an
older sgan that dropped the key would train or sample something other than what the file
describes. So whenever a kind's tensors, fields or configuration change, its schema number
goes up and the new key set is recorded here (``tests/test_schemas.py`` fails when a config
field is added without that).
"""

from __future__ import annotations

from collections.abc import Mapping

# kind → current schema version
SCHEMAS: dict[str, int] = {
    "sgan.dictionary": 2,  # 2: tensor "mean" (the mean image / mean patch of the centred signals)
    "sgan.generator": 3,  # 2: synthesis.mean always held; train.sync_bn, precision, eval_*, model.sparsity, pack
    # 3: model.clip_images, model.straight_through (older files: unclipped images, sparse gradients)
    "sgan.checkpoint": 3,  # 2: as the generator (the options above were added while it said 1); 3: as the generator
    "sgan.samples": 2,  # 2: its config may hold the schema-3 model keys (absent when sampled from an older generator)
    "sgan.latents": 1,
    "sgan.stats": 1,
    "sgan.classifier": 1,
}

# older schemas a reader still accepts (its validator and loader fill in what they lack)
OLDER_SCHEMAS: dict[str, tuple[int, ...]] = {
    "sgan.dictionary": (1,),  # 1: no mean (mean = 0)
    "sgan.generator": (1, 2),  # 1: synthesis.mean may be absent (mean = 0); 1, 2: the schema-3 keys false
    "sgan.checkpoint": (1, 2),
    "sgan.samples": (1,),
}

# --- the configuration keys, section by section, as each schema recorded them ----------------

_DATA = frozenset({"download", "image_size", "limit", "name", "root", "seed", "split"})
_DICT = frozenset(
    {
        "alpha", "atoms", "batch_size", "device", "heldout", "max_samples", "mean", "passes", "patch", "seed",
        "solver", "sparsity", "stride",
    }
)  # fmt: skip
_MODEL = frozenset(
    {
        "arch", "beta", "controller_gain", "critic_arch", "critic_norm", "d_width", "e_width", "g_width",
        "learn_threshold", "mbd_dim", "minibatch_disc", "pack", "sparsity", "support_target", "threshold", "topk",
        "z_dim",
    }
)  # fmt: skip
_MODEL_3 = _MODEL | {"clip_images", "straight_through"}
_GAN = frozenset(
    {"beta1", "beta2", "clip", "critic_steps", "feature_matching", "gp_lambda", "lr_d", "lr_g", "objective"}
)
_RECON = frozenset({"every", "kl_weight", "lr", "mode", "steps", "weight"})
_TRAIN = frozenset(
    {
        "batch_size", "device", "dict", "ema", "eval_every", "eval_features", "eval_samples", "grid_every",
        "log_every", "precision", "save_every", "seed", "steps", "sync_bn",
    }
)  # fmt: skip
_CLASSIFIER = frozenset(
    {"batch_size", "device", "dropout", "epochs", "feature_dim", "lr", "seed", "shift", "weight_decay", "width"}
)

FREE = None  # a section of free-form settings (what a command was asked), not read back as configuration

_RUN = {"data": _DATA, "model": _MODEL, "gan": _GAN, "recon": _RECON, "train": _TRAIN}
_RUN_3 = {**_RUN, "model": _MODEL_3}

# kind → schema → section → its keys (FREE: any). Schema-1 files were written while keys were
# being added under the same number, so they may hold any key of the first schema after them.
CONFIG_KEYS: dict[str, dict[int, Mapping[str, frozenset[str] | None]]] = {
    "sgan.dictionary": {1: {"data": _DATA, "dict": _DICT}, 2: {"data": _DATA, "dict": _DICT}},
    "sgan.generator": {1: _RUN, 2: _RUN, 3: _RUN_3},
    "sgan.checkpoint": {1: _RUN, 2: _RUN, 3: _RUN_3},
    "sgan.samples": {1: {**_RUN, "sample": FREE}, 2: {**_RUN_3, "sample": FREE}},
    "sgan.latents": {1: {"data": _DATA, "encode": FREE}},
    "sgan.stats": {1: {}},
    "sgan.classifier": {1: {"data": _DATA, "classifier": _CLASSIFIER}},
}


def legacy_model_keys(model: object, saved_section: Mapping[str, object]) -> None:
    """Model keys a file from before them lacks take the value that reproduces it (generator and
    checkpoint files of schema ≤ 2): images unclipped (``clip_images`` false), the sparse head's
    gradient only through kept codes (``straight_through`` false)."""
    for key in ("clip_images", "straight_through"):
        if key not in saved_section:
            setattr(model, key, False)


def unknown_config_keys(kind: str, schema: int, config: Mapping[str, object]) -> list[str]:
    """The keys (``section`` or ``section.key``) of ``config`` that a ``kind`` file of ``schema``
    cannot hold, sorted; empty when every key is known."""
    sections = CONFIG_KEYS[kind][schema]
    unknown = []
    for section, values in config.items():
        if section not in sections:
            unknown.append(str(section))
            continue
        keys = sections[section]
        if keys is FREE:
            continue
        if not isinstance(values, Mapping):
            unknown.append(f"{section} (not a mapping)")
            continue
        unknown.extend(f"{section}.{key}" for key in values if key not in keys)
    return sorted(unknown)
