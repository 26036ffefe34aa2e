"""Pictures of training: ``curves.png`` in every run folder, ``sgan plot``, TensorBoard.

Drawn from ``metrics.jsonl`` (one JSON object per log interval, see :mod:`sgan_cli.training`)
with matplotlib, an optional extra (``pip install 'sgan[plots]'``): without it training runs
as before and says once that it drew no curves; ``sgan plot`` says what to install.
TensorBoard logging (``--tensorboard``) uses ``torch.utils.tensorboard``, which needs the
``tensorboard`` package.

Panels, each drawn when its keys are in the metrics: the losses (critic, generator), the
gradient penalty, the support fraction of the generated codes with its target
(``support_target``, when logged), the soft threshold λ (``lambda``), the third player's
losses (``recon_e``, ``recon_heldout``, ``recon_g``, ``vae``, ``kl``, ``fm``), the reconstructor's
gap to a better-trained copy of itself (``recon_gap``) and images/s, all against the generator step.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .contracts import atomic_write_bytes
from .errors import SganError, printable
from .outputs import STAGING_PREFIX

PLOTS_EXTRA = "pip install 'sgan[plots]' (or pip install matplotlib)"

# panel title → (metric keys drawn as lines, keys drawn dashed as targets, y label)
PANELS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "losses": (("loss_d", "loss_g"), (), "loss"),
    "gradient penalty": (("gp",), (), "(‖∇D(x̂)‖₂ − 1)²"),
    "support fraction of the codes": (("support",), ("support_target",), "share of non-zero codes"),
    "soft threshold λ": (("lambda",), (), "λ"),
    "third player": (("recon_e", "recon_heldout", "recon_g", "vae", "kl", "fm"), (), "loss"),
    "reconstructor gap": (("recon_gap",), (), "‖E(G(z)) − z‖² a copy of E still gains"),
    "speed": (("images_per_s",), (), "images/s"),
    "FID (evaluation)": (("fid",), (), "FID"),
    "Inception Score (evaluation)": (("inception",), (), "IS"),
    "precision and recall (evaluation)": (("precision", "recall"), (), "fraction"),
}
LABELS = {
    "loss_d": "critic", "loss_g": "generator", "gp": "gradient penalty", "support": "support",
    "support_target": "target", "lambda": "λ", "recon_e": "‖E(G(z)) − z‖²", "recon_g": "‖G(E(x)) − x‖²",
    "recon_heldout": "‖E(G(z)) − z‖² held out", "recon_gap": "gap to 25 more E steps",
    "vae": "VAE", "kl": "KL", "fm": "feature matching", "images_per_s": "images/s",
    "fid": "FID", "inception": "IS", "precision": "precision", "recall": "recall",
}  # fmt: skip


def have_matplotlib() -> bool:
    """Whether matplotlib can be imported (the ``plots`` extra)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def read_metrics(run: Path) -> list[dict[str, float]]:
    """The entries of ``RUN/metrics.jsonl`` (or of a metrics file given directly), in order.

    Raises SganError when the file is missing, or a line is not a JSON object with a step.
    """
    path = run / "metrics.jsonl" if run.is_dir() else run
    if not path.is_file():
        raise SganError(
            f"{run} holds no metrics.jsonl",
            where=str(run),
            fix="give a run folder written by sgan train (it logs every train.log_every steps)",
        )
    entries = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise SganError(
                f"line {i} of {path} is not JSON",
                where=f"{path}:{i}",
                fix="remove the broken line (a run killed while writing leaves one)",
            ) from None
        if not isinstance(entry, dict) or not isinstance(entry.get("step"), (int, float)):
            raise SganError(
                f"line {i} of {path} has no step", where=f"{path}:{i}", fix="give a metrics.jsonl written by sgan train"
            )
        entries.append(entry)
    return entries


def panels_for(runs: Sequence[Sequence[dict[str, Any]]]) -> list[str]:
    """The panels with at least one finite value in any run."""
    present = {
        k for entries in runs for e in entries for k, v in e.items() if isinstance(v, (int, float)) and math.isfinite(v)
    }
    return [title for title, (keys, targets, _) in PANELS.items() if present & set(keys + targets)]


def _series(entries: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pts = [
        (float(e["step"]), float(e[key]))
        for e in entries
        if isinstance(e.get(key), (int, float)) and math.isfinite(e[key])
    ]
    return [p[0] for p in pts], [p[1] for p in pts]


def _draw_panel(ax: Any, entries: Sequence[dict[str, Any]], title: str) -> int:
    """One panel's lines; returns how many it drew."""
    keys, targets, ylabel = PANELS[title]
    drawn = 0
    for key in keys:
        xs, ys = _series(entries, key)
        if xs:
            ax.plot(xs, ys, label=LABELS[key], linewidth=1.2, marker="." if len(xs) < 3 else None)
            drawn += 1
    for key in targets:
        xs, ys = _series(entries, key)
        if xs:
            ax.plot(xs, ys, "--", color="black", label=LABELS[key], linewidth=1.0)
            drawn += 1
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("generator step", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    return drawn


def _legend(ax: Any) -> None:
    """The key of a panel with several lines, below its axes: inside them it covered the lines
    it names (a panel of one line is named by its title)."""
    handles = ax.get_legend_handles_labels()[0]
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=min(3, len(handles)), frameon=False)


def draw_curves(runs: Sequence[tuple[str, Sequence[dict[str, Any]]]], path: Path) -> Path:
    """Draw the curves of one run (a grid of panels) or several (one column per run, one row
    per panel, rows sharing their y axis so the runs compare directly) into the PNG ``path``,
    written atomically. ``runs``: (label, metrics entries) pairs.

    Raises SganError when matplotlib is missing or no run has a drawable value.
    """
    fig = curves_figure(runs)
    atomic_write_bytes(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    return path


def curves_figure(runs: Sequence[tuple[str, Sequence[dict[str, Any]]]]) -> Any:
    """The matplotlib Figure :func:`draw_curves` writes."""
    if not have_matplotlib():
        raise SganError(
            "drawing training curves needs matplotlib, which is not installed", where="matplotlib", fix=PLOTS_EXTRA
        )
    from matplotlib.figure import Figure

    titles = panels_for([entries for _, entries in runs])
    if not titles:
        raise SganError(
            "there is nothing to draw: no metrics logged yet",
            where=", ".join(label for label, _ in runs),
            fix="train at least train.log_every steps",
        )
    if len(runs) == 1:
        cols = min(3, len(titles))
        rows = math.ceil(len(titles) / cols)
        fig = Figure(figsize=(4.2 * cols, 3.0 * rows), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax, title in zip(axes, titles):
            if _draw_panel(ax, runs[0][1], title) > 1:
                _legend(ax)
        for ax in axes[len(titles) :]:
            ax.set_visible(False)
        fig.suptitle(printable(runs[0][0]), fontsize=10)  # a folder name that is not UTF-8: its bytes as \xNN
    else:
        fig = Figure(figsize=(3.6 * len(runs), 2.6 * len(titles)), layout="constrained")
        axes = fig.subplots(len(titles), len(runs), squeeze=False, sharey="row")
        for r, title in enumerate(titles):
            drawn = [_draw_panel(axes[r, c], entries, title) for c, (_, entries) in enumerate(runs)]
            # one key per row, under the first run with several lines in it
            keyed = next((c for c, n in enumerate(drawn) if n > 1), None)
            if keyed is not None:
                _legend(axes[r, keyed])
        for c, (label, _) in enumerate(runs):
            axes[0, c].set_title(f"{printable(label)}\n{titles[0]}", fontsize=9)
    return fig


@dataclass
class CurvesHook:
    """A training hook (see :func:`sgan_cli.training.run_training`): redraws ``curves.png``
    beside the run's metrics.jsonl (so a resumed run's curves start at step 1) at a log
    interval — at most every ``min_interval_s`` seconds, the first time ``min_interval_s`` after
    the hook was made, so a fast run does not spend its time drawing (a draw takes about a
    second) — and always at the end. Without matplotlib it draws nothing and calls ``note``
    once with what to install. Only the process that writes metrics.jsonl (rank 0 under
    torchrun) should be given one."""

    note: Callable[[str], None] | None = None
    min_interval_s: float = 10.0
    name: str = "curves.png"

    def __post_init__(self) -> None:
        self.last_draw = time.perf_counter()  # the first draw waits too: a short run draws once, at the end
        self.available = have_matplotlib()
        self.dirty = False

    def log(self, entry: dict[str, Any], folder: Path) -> None:
        """``folder``: where metrics.jsonl is (the run folder, or its staging folder)."""
        self.dirty = True
        if time.perf_counter() - self.last_draw >= self.min_interval_s:
            self.draw(folder)

    def grid(self, step: int, grid: Any, folder: Path) -> None:
        """Sample grids are not part of the curves."""

    def draw(self, folder: Path) -> None:
        if not self.available:
            if self.note is not None:
                self.note(f"no curves.png: drawing it needs matplotlib ({PLOTS_EXTRA}); metrics.jsonl has the numbers")
                self.note = None
            return
        metrics = folder / "metrics.jsonl"
        if metrics.is_file():
            entries = read_metrics(metrics)
            if entries and panels_for([entries]):
                draw_curves([(str(run_folder_of(folder)), entries)], folder / self.name)
        self.last_draw, self.dirty = time.perf_counter(), False

    def close(self, folder: Path) -> None:
        if self.dirty or not self.available:
            self.draw(folder)


def run_folder_of(folder: Path) -> Path:
    """The run folder a metrics folder belongs to: a new run writes into a hidden staging
    folder inside it (``RUN/.sgan-staging-…``, :class:`sgan_cli.outputs.Staging`) until its
    first checkpoint, and its curves are titled with the run, not the staging folder."""
    return folder.parent if folder.name.startswith(STAGING_PREFIX) else folder


def tensorboard_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


class TensorBoardHook:
    """A training hook writing every metrics line as scalars (``train/KEY``) and every sample
    grid as an image (``samples``) with ``torch.utils.tensorboard.SummaryWriter`` into
    ``tensorboard/`` beside metrics.jsonl (created at the first write; a new run's staging
    folder moves in whole, open event files included). Raises SganError at once when the
    tensorboard package is missing."""

    def __init__(self) -> None:
        if not tensorboard_available():
            raise SganError(
                "--tensorboard needs the tensorboard package, which is not installed",
                where="--tensorboard",
                fix=(
                    "pip install tensorboard, or leave out --tensorboard "
                    "(curves.png and metrics.jsonl are always written)"
                ),
            )
        self.writer: Any = None

    def _open(self, folder: Path) -> Any:
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(folder / "tensorboard"))
        return self.writer

    def log(self, entry: dict[str, Any], folder: Path) -> None:
        w = self._open(folder)
        step = int(entry["step"])
        for key, value in entry.items():
            if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                w.add_scalar(f"train/{key}", value, step)
        w.flush()

    def grid(self, step: int, grid: Any, folder: Path) -> None:
        """``grid``: uint8 [C, H, W] (C = 1 or 3), as written to grids/step-NNNNNN.png."""
        img = grid if grid.shape[0] == 3 else grid.expand(3, -1, -1)
        self._open(folder).add_image("samples", img, step, dataformats="CHW")
        self.writer.flush()

    def close(self, folder: Path) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def plot_runs(runs: Sequence[Path], out: Path) -> list[int]:
    """``sgan plot``: the curves of several runs, side by side, into ``out``; returns the
    number of logged entries of each run."""
    if not runs:
        raise SganError(
            "no run folders to plot", where="RUN", fix="give one or more run folders, e.g. sgan plot runs/a runs/b"
        )
    data = [(str(run), read_metrics(run)) for run in runs]
    empty = [label for label, entries in data if not entries]
    if empty:
        raise SganError(
            f"{empty[0]} has an empty metrics.jsonl", where=empty[0], fix="train at least train.log_every steps"
        )
    draw_curves(data, out)
    return [len(entries) for _, entries in data]
