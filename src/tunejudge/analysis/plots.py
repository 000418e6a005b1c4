"""Plots (matplotlib, PNG): readable without the surrounding text."""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..io import atomic_path  # noqa: E402

PNG_META = {"Software": None}  # no version string: same data, same bytes


def percent(level: float) -> str:
    """A CI level as its label: 0.95 -> '95', 0.975 -> '97.5' (plots, captions and the report)."""
    return f"{level * 100:.1f}".rstrip("0").rstrip(".")


def loss_curves(history: dict, title: str, path) -> None:
    """Train and validation loss against epochs, tokens seen on a second x-axis (as the study plotted)."""
    ev = history["evaluations"]
    epochs = [e["epoch"] for e in ev]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(epochs, [e["train_loss"] for e in ev], marker="o", ms=3, label="training loss")
    if any(e["val_loss"] is not None for e in ev):
        ax.plot(epochs, [e["val_loss"] for e in ev], marker="s", ms=3, ls="--", label="validation loss")
    ax.set_xlabel("epochs")
    objective = history.get("objective") or {}
    ax.set_ylabel(f"loss ({objective['loss']} preference loss per pair)" if objective.get("objective") == "dpo"
                  else "loss (cross-entropy per token)")
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
    _save(fig, path)


def _save(fig, path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, metadata=PNG_META)
    plt.close(fig)


def _wrap(title: str, width: int = 90) -> str:
    return "\n".join(textwrap.fill(line, width) for line in title.splitlines())


def all_loss_curves(histories: dict, title: str, path) -> None:
    """Validation (solid) and training (dashed) loss of every fine-tuned model against epochs."""
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    for i, (model, h) in enumerate(sorted(histories.items())):
        ev = h["evaluations"]
        color = f"C{i}"
        ax.plot([e["epoch"] for e in ev], [e["train_loss"] for e in ev], ls="--", color=color, alpha=0.7,
                label=f"{model}: training")
        if any(e["val_loss"] is not None for e in ev):
            ax.plot([e["epoch"] for e in ev], [e["val_loss"] for e in ev], marker="o", ms=3, color=color,
                    label=f"{model}: validation")
    ax.set_xlabel("epochs")
    dpo = any((h.get("objective") or {}).get("objective") == "dpo" for h in histories.values())
    ax.set_ylabel("loss (cross-entropy per token; preference loss per pair for DPO models)" if dpo
                  else "loss (cross-entropy per token)")
    ax.set_title(_wrap(title), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def score_distributions(judge, metrics: list[str], models: list[str], title: str, path) -> None:
    """Share of answers at each 0-5 score, one panel per metric, one bar colour per model."""
    import numpy as np

    bins = np.arange(0, 5.5, 0.5)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8), sharey=True, squeeze=False)
    width = 0.5 / max(1, len(models))
    for ax, metric in zip(axes[0], metrics):
        for i, model in enumerate(models):
            v = judge[(judge.model == model) & (judge.metric == metric)]["score_5"].dropna().to_numpy()
            if not len(v):
                continue
            counts = np.array([((v >= b - 0.25) & (v < b + 0.25)).sum() for b in bins]) / len(v)
            ax.bar(bins - 0.25 + width * (i + 0.5), counts, width=width, color=f"C{i}", label=model)
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel("judge score (0-5)")
        ax.set_xticks(range(6))
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("share of answers")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(_wrap(title, 55 * len(metrics)), fontsize=9)
    _save(fig, path)


def source_means(by_source, models: list[str], title: str, path, level: float = 0.95) -> None:
    """Mean total score (0-15 with three metrics) per source and model, CI whiskers at ``level``."""
    import numpy as np

    sources = sorted(by_source["source"].unique())
    x = np.arange(len(sources))
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(sources)), 4.2))
    for i, model in enumerate(models):
        part = by_source[by_source.model == model].set_index("source").reindex(sources)
        mean = part["total"].to_numpy(dtype=float)
        err = np.vstack([mean - part["total_lo"].to_numpy(dtype=float), part["total_hi"].to_numpy(dtype=float) - mean])
        ax.bar(x + width * (i - (len(models) - 1) / 2), mean, width=width, yerr=np.nan_to_num(err), capsize=3,
               color=f"C{i}", label=model)
    ax.set_xticks(x)
    ax.set_xticklabels(sources, rotation=15)
    ax.set_ylabel(f"mean total judge score ({percent(level)}% CI)")
    ax.set_title(_wrap(title), fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def length_controlled(table, title: str, path) -> None:
    """Per model pair: the raw preference (win + tie / 2) beside the length-controlled one, with CIs."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(7.0, 0.9 + 0.8 * max(1, len(table))))
    y = np.arange(len(table))
    for offset, key, color, label in ((-0.15, "raw", "C0", "raw"), (0.15, "lc", "C1", "length-controlled")):
        v = table[key].to_numpy(dtype=float)
        err = np.vstack([v - table[f"{key}_lo"].to_numpy(dtype=float), table[f"{key}_hi"].to_numpy(dtype=float) - v])
        ax.errorbar(v, y + offset, xerr=np.nan_to_num(err), fmt="o", color=color, capsize=3, label=label)
    ax.axvline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_yticks(y)
    ax.set_yticklabels(table["pair"])
    ax.set_xlim(0, 1)
    ax.set_xlabel("preference for the first model (win + tie / 2); 0.5 = no preference")
    ax.set_title(_wrap(title), fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)


def win_tie_loss_bars(pairs, title: str, path, level: float = 0.95) -> None:
    """Per model pair: win / tie / loss shares on the per-item total, CI whiskers (``level``) on win and loss."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(7.0, 0.9 + 0.8 * max(1, len(pairs))))
    y = np.arange(len(pairs))
    win, tie, loss = (pairs[k].to_numpy(dtype=float) for k in ("win", "tie", "loss"))
    ax.barh(y, win, color="C2", label="win")
    ax.barh(y, tie, left=win, color="C7", label="tie")
    ax.barh(y, loss, left=win + tie, color="C3", label="loss")
    lo, hi = pairs["win_lo"].to_numpy(dtype=float), pairs["win_hi"].to_numpy(dtype=float)
    ax.errorbar(win, y, xerr=np.nan_to_num(np.vstack([win - lo, hi - win])), fmt="none", ecolor="black", capsize=3)
    lo, hi = pairs["loss_lo"].to_numpy(dtype=float), pairs["loss_hi"].to_numpy(dtype=float)
    edge = 1 - loss  # where the loss bar starts; its CI moves that edge
    ax.errorbar(edge, y, xerr=np.nan_to_num(np.vstack([hi - loss, loss - lo])), fmt="none", ecolor="black",
                capsize=3)
    ax.set_yticks(y)
    ax.set_yticklabels(pairs["pair"])
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"share of test items (per-item total; whiskers: {percent(level)}% bootstrap CI)")
    ax.set_title(_wrap(title), fontsize=9)
    ax.legend(ncol=3, fontsize=8, loc="lower right")
    _save(fig, path)


def seed_spread(seeds, models: list[str], title: str, path, level: float = 0.95) -> None:
    """Per measure (one panel each) and model: one point per seed (its items-only CI as a thin whisker) and,
    for a model with several seeds, the pooled mean with its Multi-Bootstrap CI (a bold whisker)."""
    import numpy as np

    measures = list(dict.fromkeys(seeds["measure"])) or ["total"]
    fig, axes = plt.subplots(1, len(measures), figsize=(4.6 * len(measures), 3.8), squeeze=False)
    for ax, measure in zip(axes[0], measures):
        part = seeds[seeds.measure == measure]
        for i, model in enumerate(models):
            runs = part[(part.model == model) & (part.run != "pooled")]
            if not len(runs):
                continue
            x = i + np.linspace(-0.2, 0.2, len(runs)) if len(runs) > 1 else np.array([float(i)])
            v = runs["mean"].to_numpy(dtype=float)
            err = np.vstack([v - runs["lo"].to_numpy(dtype=float), runs["hi"].to_numpy(dtype=float) - v])
            ax.errorbar(x, v, yerr=np.nan_to_num(err), fmt="o", ms=4, color=f"C{i}", alpha=0.6, lw=0.8, capsize=2)
            pooled = part[(part.model == model) & (part.run == "pooled")]
            if len(pooled):
                m, lo, hi = (float(pooled[k].iloc[0]) for k in ("mean", "lo", "hi"))
                ax.errorbar([i + 0.35], [m], yerr=[[m - lo], [hi - m]], fmt="D", ms=6, color=f"C{i}", lw=2, capsize=4)
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models, rotation=15)
        ax.set_title({"total": "judge total", "reference": "judge-free headline metric"}.get(measure, measure), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel(f"mean over test items ({percent(level)}% CI)")
    fig.suptitle(_wrap(title + "\ncircles: one seed each (items-only CI); diamond: seeds pooled (Multi-Bootstrap CI)",
                       60 * len(measures)), fontsize=9)
    _save(fig, path)


def sweep_lines(rows, title: str, path) -> None:
    """Per sweep and swept setting (one row of panels each): validation loss and the judge-free metric (and
    the judge total, where judged) against the setting's value, one point per seed, the seeds' mean as a line."""
    panels = list(dict.fromkeys(zip(rows["sweep"], rows["setting"])))
    measures = [m for m in ("val_loss", "reference", "total") if rows[m].notna().any()] or ["val_loss"]
    fig, axes = plt.subplots(max(1, len(panels)), len(measures), figsize=(4.2 * len(measures), 3.2 * max(1, len(panels))),
                             squeeze=False)
    for r, (sweep, setting) in enumerate(panels):
        part = rows[(rows.sweep == sweep) & (rows.setting == setting)]
        values = list(dict.fromkeys(part["value"]))
        numeric = all(isinstance(v, (int, float)) for v in values)
        order = sorted(values) if numeric else values
        pos = {v: v for v in order} if numeric else {v: k for k, v in enumerate(order)}
        for c, measure in enumerate(measures):
            ax = axes[r][c]
            for seed, s in part.groupby("seed"):
                ax.plot([pos[v] for v in s["value"]], s[measure], "o", ms=4, alpha=0.6, label=f"seed {seed}")
            means = part.groupby("value", sort=False)[measure].mean()
            ax.plot([pos[v] for v in order], [means[v] for v in order], "-", color="black", lw=1.2, label="mean")
            if numeric and len(order) > 1 and min(order) > 0 and max(order) / min(order) >= 10:
                ax.set_xscale("log")
            if not numeric:
                ax.set_xticks(list(range(len(order))))
                ax.set_xticklabels([str(v) for v in order])
            ax.set_xlabel(f"{sweep}: {setting}")
            ax.set_ylabel({"val_loss": "final validation loss", "reference": "judge-free headline metric",
                           "total": "judge total"}[measure])
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(_wrap(title, 50 * len(measures)), fontsize=9)
    _save(fig, path)
