"""Figures: one way to make and save them, without touching matplotlib's global state.

Figures are built on `matplotlib.figure.Figure` directly (no `pyplot`, no backend switch), so importing or calling
anything here never changes a notebook user's backend, and nothing is left open. matplotlib is imported when a
figure is made, not when `verify` is imported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None, **subplot_kw):
    """A figure and its 2-D array of axes (`squeeze=False`), detached from pyplot."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def save_figure(fig, path, *, title: str | None = None, dpi: int = 130) -> Path:
    """Give `fig` its title, lay it out, write it as PNG (creating folders); returns the path.

    **Arguments:**

    - `fig`: a `matplotlib.figure.Figure` (e.g. from `new_figure`).
    - `path`: where to write the PNG.
    - `title`: an optional figure title.
    - `dpi`: resolution.
    """
    if title:
        fig.suptitle(title)
    if not fig.get_constrained_layout():
        fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def plot_curves(times, panels, path, *, title=None, xlabel="forward time s", log_x=False) -> Path:
    """Plot named curves in panels and save a PNG.

    **Arguments:**

    - `times`: shared x values.
    - `panels`: list of (panel title, y label, list of curve dicts). A curve dict has `label`, `y`,
      and optionally `stderr` (drawn as a ±2 stderr band), `exact` (True → dashed), `color` and `times`
      (its own x values).
    - `path`: where to write the PNG.
    - `title`, `xlabel`, `log_x`: figure title, x label, logarithmic x axis.

    **Returns:**

    The path written.
    """
    times = np.asarray(times)
    fig, axes = new_figure(1, len(panels), figsize=(4.6 * len(panels), 3.8))
    for ax, (panel_title, ylabel, curves) in zip(axes[0], panels):
        for i, curve in enumerate(curves):
            color = curve.get("color", f"C{i}")
            y = np.asarray(curve["y"], dtype=float)
            x = np.asarray(curve.get("times", times))
            ax.plot(x, y, "--" if curve.get("exact") else "-", color=color, label=curve["label"], lw=1.6)
            if curve.get("stderr") is not None:
                se = np.asarray(curve["stderr"], dtype=float)
                ax.fill_between(x, y - 2 * se, y + 2 * se, color=color, alpha=0.2, lw=0)
        if log_x:
            ax.set_xscale("log")
        ax.set_title(panel_title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path, title=title)
