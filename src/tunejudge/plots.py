"""Plots (matplotlib, PNG): readable without the surrounding text."""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .io import atomic_path  # noqa: E402

PNG_META = {"Software": None}  # no version string: same data, same bytes


def loss_curves(history: dict, title: str, path) -> None:
    """Train and validation loss against epochs, tokens seen on a second x-axis (as the study plotted)."""
    ev = history["evaluations"]
    epochs = [e["epoch"] for e in ev]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(epochs, [e["train_loss"] for e in ev], marker="o", ms=3, label="training loss")
    if any(e["val_loss"] is not None for e in ev):
        ax.plot(epochs, [e["val_loss"] for e in ev], marker="s", ms=3, ls="--", label="validation loss")
    ax.set_xlabel("epochs")
    ax.set_ylabel("loss (cross-entropy per token)")
    ax.set_title("\n".join(textwrap.fill(line, 72) for line in title.splitlines()), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    top = ax.twiny()
    top.set_xlim(ax.get_xlim())
    ticks = ax.get_xticks()
    if ev and epochs[-1] > 0:
        per_epoch = ev[-1]["tokens_seen"] / epochs[-1]
        top.set_xticks(ticks)
        top.set_xticklabels([f"{t * per_epoch / 1000:.0f}k" for t in ticks])
    top.set_xlabel("tokens seen")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, metadata=PNG_META)
    plt.close(fig)
