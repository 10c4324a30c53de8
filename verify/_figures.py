"""Figures of exact and estimated information curves (exact dashed, learned solid, bands from stderr)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_curves(times, panels, path, *, title=None, xlabel="forward time s", log_x=False):
    """Plot named curves in panels and save a PNG.

    **Arguments:**

    - `times`: shared x values.
    - `panels`: list of (panel title, y label, list of curve dicts). A curve dict has `label`, `y`,
      and optionally `stderr` (drawn as a ±2 stderr band), `exact` (True → dashed) and `color`.
    - `path`: where to write the PNG.
    """
    times = np.asarray(times)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for ax, (panel_title, ylabel, curves) in zip(axes[0], panels):
        for i, curve in enumerate(curves):
            color = curve.get("color", f"C{i}")
            y = np.asarray(curve["y"])
            x = np.asarray(curve.get("times", times))
            ax.plot(x, y, "--" if curve.get("exact") else "-", color=color, label=curve["label"], lw=1.6)
            if curve.get("stderr") is not None:
                se = np.asarray(curve["stderr"])
                ax.fill_between(x, y - 2 * se, y + 2 * se, color=color, alpha=0.2, lw=0)
        if log_x:
            ax.set_xscale("log")
        ax.set_title(panel_title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path, title=title)


def save_figure(fig, path, *, title: str | None = None, dpi: int = 130) -> Path:
    """Give `fig` its title, lay it out, write it as PNG (creating folders) and close it; returns the path."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
