"""Run time and peak memory against the number of cells (Fig 6f), from Snakemake ``benchmark:`` files.

Snakemake writes one TSV per job with the columns ``s, h:m:s, max_rss, max_vms, max_uss, max_pss, io_in,
io_out, mean_load, cpu_time`` (memory in MB), one row per ``repeat(...)``. The method and cell count of each
file come from the rule's wildcards, so the caller passes them alongside the path.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator

from .style import FULL_WIDTH, figure_style, method_color, method_label, order_methods, save_figure, suptitle

__all__ = ["read_benchmarks", "runtime_scaling", "growth_exponent"]


def read_benchmarks(records: Iterable[tuple[str, int, str | os.PathLike]]) -> pd.DataFrame:
    """Read Snakemake benchmark files into one table ``method, n_cells, repeat, s, max_rss, …``.

    Parameters
    ----------
    records
        ``(method, n_cells, path)`` per benchmark file (e.g. ``zip(methods, sizes, input)`` in a rule).
        Unmeasured values (``-``/``NA``) become NaN.
    """
    frames = []
    for method, n_cells, path in records:
        df = pd.read_csv(path, sep="\t", na_values=["-", "NA", ""])
        if "s" not in df.columns:
            raise ValueError(f"{path} is not a Snakemake benchmark file (no column 's'); pass the "
                             "benchmark: output of the rule")
        df.insert(0, "repeat", range(len(df)))
        df.insert(0, "n_cells", int(n_cells))
        df.insert(0, "method", str(method))
        frames.append(df)
    if not frames:
        raise ValueError("no benchmark files given")
    return pd.concat(frames, ignore_index=True)


def growth_exponent(n_cells: np.ndarray, values: np.ndarray) -> float:
    """Slope of log(value) against log(n_cells) by least squares (NaN with fewer than two sizes)."""
    from ..scaling import loglog_fit

    return loglog_fit(n_cells, values)[0]


def _cells_label(n: float) -> str:
    return f"{n / 1e6:g}M" if n >= 1e6 else f"{n / 1e3:g}k" if n >= 1e3 else f"{n:g}"


def runtime_scaling(bench: pd.DataFrame, out_png: str | os.PathLike, *, title: str | None = None):
    """Fig 6f: wall time and peak memory against cells, log–log, one line per method.

    Units follow the data (seconds, minutes or hours; MB or GB).

    Points: mean over repeats; whiskers: min–max over repeats. The legend gives each method's growth
    exponent ``b`` of ``time ∝ cells^b`` (least squares on the means). Peak memory is ``max_rss`` and is
    skipped when the benchmark recorded none.
    """
    need = {"method", "n_cells", "s"}
    if need - set(bench.columns):
        raise ValueError(f"benchmark table lacks {sorted(need - set(bench.columns))}; build it with read_benchmarks()")
    s_max = float(bench["s"].max())
    if s_max < 300:
        t_unit = ("wall time (s)", 1.0)
    elif s_max < 3 * 3600:
        t_unit = ("wall time (min)", 1 / 60)
    else:
        t_unit = ("wall time (h)", 1 / 3600)
    panels = [("s", *t_unit)]
    if "max_rss" in bench and bench["max_rss"].notna().any():
        big = float(bench["max_rss"].max()) >= 2048
        panels.append(("max_rss", "peak memory (GB)" if big else "peak memory (MB)", 1 / 1024 if big else 1.0))
    methods = order_methods(bench["method"].unique())
    sizes = sorted(bench["n_cells"].unique())
    with figure_style():
        fig, axes = plt.subplots(1, len(panels), figsize=(FULL_WIDTH if len(panels) > 1 else FULL_WIDTH / 2, 2.6),
                                 squeeze=False)
        axes = axes[0]
        fig.subplots_adjust(left=0.09 if len(panels) > 1 else 0.18, right=0.98, top=0.84 if title else 0.93,
                            bottom=0.34, wspace=0.3)
        exps: dict[str, float] = {}
        for (col, label, scale), ax in zip(panels, axes):
            for m in methods:
                d = bench[bench["method"] == m].groupby("n_cells")[col].agg(["mean", "min", "max"]).dropna()
                if d.empty:
                    continue
                c = method_color(m)
                err = [(d["mean"] - d["min"]) * scale, (d["max"] - d["mean"]) * scale]
                ax.errorbar(d.index, d["mean"] * scale, yerr=err,
                            color=c, marker="o", ms=3, lw=1.1, capsize=1.5, elinewidth=0.6)
                if col == "s":
                    exps[m] = growth_exponent(d.index.to_numpy(), d["mean"].to_numpy())
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks(sizes)
            ax.set_xticklabels([_cells_label(s) for s in sizes])
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.minorticks_off()
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.set_xlabel("cells")
            ax.set_ylabel(label)
            ax.grid(True, lw=0.3, color="0.92", which="major")
        handles = [Line2D([], [], color=method_color(m), marker="o", ms=3,
                          label=method_label(m) + (f"  (time ∝ cells^{exps[m]:.2f})"
                                                   if np.isfinite(exps.get(m, np.nan)) else ""))
                   for m in methods]
        fig.legend(handles=handles, loc="lower center", ncol=min(3, len(handles)), bbox_to_anchor=(0.5, 0.01))
        if title:
            suptitle(fig, title)
        return save_figure(fig, out_png)
