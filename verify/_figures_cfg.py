"""The exact mutual information under classifier-free guidance for the joint Gaussian (cf. Figs. 2-right, 10)."""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_cfg_curve(table: dict, path: str | pathlib.Path) -> pathlib.Path:
    r"""Plot the exact $I(X_{CFG}; Y)(w)$, in nats, for each $D_Y$, with the unguided $I(X;Y)$ (Eq. 49) dashed.

    The left panel is the paper's Fig. 10 with exact values instead of MINDE estimates; the right panel divides
    by $I(X;Y)$ and shows the line $1 + w$ for comparison.

    **Arguments:**

    - `table`: the `cfg_table` entry of `benchmarks/results/oracle.json`: keys `w` (list), `dim_x`, and `rows`,
      each row with `dim_y`, `mutual_information` and `cfg_mutual_information` (one value per `w`).
    - `path`: where to write the PNG.

    **Returns:**

    The path written.
    """
    path = pathlib.Path(path)
    w = np.asarray(table["w"], dtype=float)
    rows = sorted(table["rows"], key=lambda row: row["dim_y"])
    if not rows:
        raise ValueError("table['rows'] is empty; nothing to plot.")
    colors = plt.get_cmap("viridis")(np.linspace(0.1, 0.8, len(rows)))
    fig, (ax, ax_ratio) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for row, color in zip(rows, colors):
        info = np.asarray(row["cfg_mutual_information"], dtype=float)
        if info.shape != w.shape:
            raise ValueError(f"row dim_y={row['dim_y']} has {info.size} values for {w.size} values of w.")
        mi = float(row["mutual_information"])
        ax.plot(w, info, "o-", color=color, ms=3.5, lw=1.6, label=f"$D_Y = {row['dim_y']}$")
        ax.axhline(mi, color=color, ls="--", lw=1.0)
        ax_ratio.plot(w, info / mi, "o-", color=color, ms=3.5, lw=1.6, label=f"$D_Y = {row['dim_y']}$")
    ax_ratio.plot(w, 1.0 + w, ":", color="0.3", lw=1.2, label="$1 + w$")
    ax.set_xlabel("guidance strength $w$")
    ax.set_ylabel(r"$I(X_{\mathrm{CFG}}; Y)$  [nats]")
    ax.set_title(f"Exact CFG information, $D_X = {table.get('dim_x', '?')}$ (dashed: $I(X;Y)$ at $w = 0$)",
                 fontsize=10)
    ax_ratio.set_xlabel("guidance strength $w$")
    ax_ratio.set_ylabel(r"$I(X_{\mathrm{CFG}}; Y)\,/\,I(X;Y)$")
    ax_ratio.set_title("Relative gain: close to $1 + w$, no saturation", fontsize=10)
    for a in (ax, ax_ratio):
        a.set_xlim(w.min(), w.max())
        a.set_ylim(bottom=0)
        a.grid(alpha=0.3)
        a.legend(frameon=False, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path
