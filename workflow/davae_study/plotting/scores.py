"""Score figures from the tidy metrics tables (CONTRACTS: ``application, method, metric, group, value, n,
note``): the ARI dot plot (Figs 2f, 3f), kBET acceptance vs neighbourhood size (Figs 2g, 3g, 4b) and the
cross-application methods × metrics heatmap (beyond the paper, scIB style).
"""

from __future__ import annotations

import math
import os
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from .style import (
    fit_title,
    suptitle,
    FULL_WIDTH,
    HALF_WIDTH,
    MAX_HEIGHT,
    empty_panel,
    figure_style,
    method_color,
    method_label,
    order_methods,
    save_figure,
)

__all__ = ["ari_scatter", "kbet_curves", "summary_columns", "summary_heatmap", "parse_kbet_group", "METRIC_LABELS"]

TIDY_COLUMNS = ("application", "method", "metric", "group", "value", "n", "note")
_KBET_GROUP = re.compile(r"^(?:(?P<celltype>.+)\|)?kbet@(?P<pct>\d+(?:\.\d+)?)%$")

#: Display names of the metrics (anything else is shown under its own name).
METRIC_LABELS = {
    "ari_celltype": "ARI cell type",
    "one_minus_ari_batch": "1 − ARI batch",
    "ari_celltype_norm": "ARI cell type (scaled)",
    "one_minus_ari_batch_norm": "1 − ARI batch (scaled)",
    "ari_f1": "F1 (ARI)",
    "knn_purity": "kNN purity",
    "nmi_leiden": "NMI (Leiden)",
    "ari_leiden": "ARI (Leiden)",
    "kbet_acceptance": "kBET acceptance",
    "kbet_acceptance_pooled": "kBET (pooled)",
    "ilisi": "iLISI",
    "clisi": "cLISI",
    "asw_batch": "batch ASW",
    "asw_celltype": "cell-type ASW",
    "graph_connectivity": "graph connectivity",
    "transfer_accuracy": "transfer accuracy",
    "transfer_macro_f1": "transfer macro-F1",
    "wall_s": "run time (s)",
    "peak_rss_mb": "peak memory (MB)",
}
#: Metrics where a lower value is better (coloured accordingly in the summary heatmap). ``ilisi``/``clisi``
#: are scIB-scaled by the metrics package (1 = best); the raw medians are not.
LOWER_IS_BETTER = {"clisi_median", "wall_s", "peak_rss_mb", "runtime_s"}
#: Metric suffixes left out of the summary heatmap unless asked for (diagnostics, duplicates).
_SUMMARY_SKIP_SUFFIXES = ("_null", "_median", "_norm")
_METRIC_ORDER = list(METRIC_LABELS)


def _check_tidy(df: pd.DataFrame, what: str, extra: tuple[str, ...] = ()) -> None:
    need = {"method", "metric", "group", "value", *extra}
    missing = need - set(df.columns)
    if missing:
        raise ValueError(f"{what} lacks columns {sorted(missing)}; expected the tidy format "
                         f"{', '.join(TIDY_COLUMNS)} (docs/CONTRACTS.md)")


def parse_kbet_group(group: str) -> tuple[str | None, float] | None:
    """``'kbet@5%'`` → ``(None, 5.0)``; ``'CD14 Mono|kbet@10%'`` → ``('CD14 Mono', 10.0)``; else ``None``."""
    m = _KBET_GROUP.match(str(group))
    if not m:
        return None
    return m.group("celltype"), float(m.group("pct"))


def _first_note(notes: pd.Series) -> str:
    """First non-empty note (the metrics package writes '' for no note; a TSV round trip gives NaN)."""
    n = notes.dropna().astype(str).str.strip()
    n = n[n != ""]
    return str(n.iloc[0]) if len(n) else ""


def _metric_label(m: str) -> str:
    return METRIC_LABELS.get(m, m)


def _iqr(values: pd.Series) -> tuple[float, float]:
    v = values.dropna().to_numpy(float)
    if len(v) < 2:
        return (np.nan, np.nan)
    return float(np.percentile(v, 25)), float(np.percentile(v, 75))


def _place_labels(ax, xs, ys, labels, colors) -> None:
    """Label points without overlaps: for each point (top to bottom) try beside it, then further up or down
    (with a leader line), on the side with room; a candidate box must not overlap an earlier label or any
    other point. Works in axes-fraction units; a label box is ~0.0185 wide per character at 6 pt in a
    ~2.7-inch axis."""
    if not len(xs):
        return
    trans = ax.transData + ax.transAxes.inverted()
    pts = trans.transform(np.column_stack([xs, ys]))
    width_in = ax.get_position().width * ax.figure.get_figwidth()
    char_w = 0.0185 * 2.7 / max(width_in, 0.5)
    h, gap, r = 0.05, 0.03, 0.018
    boxes: list[tuple[float, float, float, float]] = []

    def free(box, own):
        x0, y0, x1, y1 = box
        if x0 < 0 or x1 > 1.02 or y0 < -0.02 or y1 > 1.02:
            return False
        if any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in boxes):
            return False
        return not any(j != own and x0 - r < px < x1 + r and y0 - r < py < y1 + r for j, (px, py) in enumerate(pts))

    for i in np.argsort(-pts[:, 1]):
        x, y = pts[i]
        w = char_w * len(labels[i]) + 0.01
        sides = (1, -1) if x < 0.7 else (-1, 1)
        choice = None
        for dy in (0, 0.06, -0.06, 0.12, -0.12, 0.18, -0.18, 0.24, -0.24, 0.3, -0.3):
            for side in sides:
                lx = x + side * gap
                box = (lx, y + dy - h / 2, lx + w, y + dy + h / 2) if side > 0 else \
                      (lx - w, y + dy - h / 2, lx, y + dy + h / 2)
                if free(box, i):
                    choice = (lx, y + dy, side, box)
                    break
            if choice:
                break
        if choice is None:  # crowded beyond the search: put it beside the point anyway
            lx, side = x + sides[0] * gap, sides[0]
            x0 = lx if side > 0 else lx - w
            choice = (lx, y, side, (x0, y - h / 2, x0 + w, y + h / 2))
        lx, ly, side, box = choice
        boxes.append(box)
        ax.annotate(labels[i], xy=(xs[i], ys[i]), xycoords="data", xytext=(lx, ly), textcoords="axes fraction",
                    ha="left" if side > 0 else "right", va="center", fontsize=6, color=colors[i],
                    arrowprops=dict(arrowstyle="-", lw=0.4, color="0.5", shrinkA=0, shrinkB=2)
                    if abs(ly - y) > 0.01 else None)


def ari_scatter(
    metrics: pd.DataFrame,
    out_png: str | os.PathLike,
    *,
    title: str | None = None,
    repeats: pd.DataFrame | None = None,
):
    """Figs 2f / 3f: ARI cell type against 1 − ARI batch, one labelled dot per method (upper right = best).

    Parameters
    ----------
    metrics
        Tidy metrics table of one application (``results/<app>/metrics.tsv``); rows with ``group == 'all'``
        and metric ``ari_celltype`` / ``one_minus_ari_batch`` are used. Methods whose values are NaN (failed,
        or not computable) are listed under the plot with their note instead of being dropped silently.
    repeats
        Optional per-repeat table (``metrics/<method>.repeats.tsv`` concatenated); when it holds the two ARI
        metrics, whiskers show their interquartile range over the iterations.
    """
    _check_tidy(metrics, "metrics table")
    ari_rows = metrics["metric"].isin(["ari_celltype", "one_minus_ari_batch"])
    sel = metrics[(metrics["group"].astype(str) == "all") & ari_rows]
    if sel.empty:
        raise ValueError("metrics table has no 'ari_celltype'/'one_minus_ari_batch' rows with group 'all'; "
                         "run the evaluate rule with the ari metric enabled")
    wide = sel.pivot_table(index="method", columns="metric", values="value", aggfunc="first", dropna=False)
    wide = wide.reindex(columns=["ari_celltype", "one_minus_ari_batch"])
    methods = order_methods(wide.index)
    wide = wide.loc[methods]
    ok = wide.notna().all(axis=1)
    notes = {}
    for m in wide.index[~ok]:
        notes[m] = (_first_note(sel.loc[sel["method"] == m, "note"]) if "note" in sel else "") or "no value"
    spread = {}
    if repeats is not None and len(repeats):
        _check_tidy(repeats, "repeats table")
        r = repeats[repeats["metric"].isin(["ari_celltype", "one_minus_ari_batch"])
                    & (repeats["group"].astype(str) == "all")]
        for (m, met), g in r.groupby(["method", "metric"]):
            spread[(m, met)] = _iqr(g["value"])

    fig_h = 3.45 + (0.1 * len(notes) if notes else 0)
    with figure_style():
        fig, ax = plt.subplots(figsize=(HALF_WIDTH, fig_h))
        bottom = (0.42 + 0.1 * len(notes) + 0.08 * bool(notes)) / fig_h
        fig.subplots_adjust(left=0.17, right=0.95, top=1 - (0.3 if title else 0.1) / fig_h, bottom=bottom)
        good = wide[ok]
        xs = good["one_minus_ari_batch"].to_numpy(float)
        ys = good["ari_celltype"].to_numpy(float)
        cols = [method_color(m) for m in good.index]
        for m, x, y, c in zip(good.index, xs, ys, cols):
            ex = spread.get((m, "one_minus_ari_batch"), (np.nan, np.nan))
            ey = spread.get((m, "ari_celltype"), (np.nan, np.nan))
            if np.isfinite(ex).all():
                ax.plot(ex, [y, y], color=c, lw=0.8, alpha=0.7, zorder=2)
            if np.isfinite(ey).all():
                ax.plot([x, x], ey, color=c, lw=0.8, alpha=0.7, zorder=2)
            ax.scatter([x], [y], s=36, color=c, edgecolor="white", linewidth=0.6, zorder=3)
        allv = np.concatenate([xs, ys, [v for p in spread.values() for v in p if np.isfinite(v)]]) if len(xs) else []
        lo = min(0.0, float(np.nanmin(allv)) - 0.03) if len(allv) else 0.0
        ax.set_xlim(lo, 1.03)
        ax.set_ylim(lo, 1.03)
        ax.set_aspect("equal", adjustable="box")
        ax.plot([lo, 1.03], [lo, 1.03], color="0.85", lw=0.6, zorder=1, ls=":")
        ax.set_xlabel("1 − ARI batch  (batch mixing →)")
        ax.set_ylabel("ARI cell type  (cell-type purity →)")
        ax.grid(True, lw=0.3, color="0.92")
        if title:
            text, size = fit_title(title, fig.get_figwidth() * 0.95)
            ax.set_title(text, fontweight="bold", fontsize=size)
        if len(good):
            fig.canvas.draw()
            _place_labels(ax, xs, ys, [method_label(m) for m in good.index], cols)
        else:
            empty_panel(ax, "no method has ARI values")
        if notes:
            txt = "\n".join(f"not shown: {method_label(m)} ({_shorten(n, 60)})" for m, n in notes.items())
            fig.text(0.02, 0.01, txt, fontsize=5.5, color="0.35", va="bottom", ha="left")
        return save_figure(fig, out_png)


def _shorten(s: str, n: int) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _kbet_frames(metrics: pd.DataFrame, repeats: pd.DataFrame | None):
    """Split kBET rows into (average curves, per-cell-type curves, per-repeat average values)."""
    def annotate(df):
        k = df[df["metric"] == "kbet_acceptance"].copy()
        parsed = k["group"].map(parse_kbet_group)
        k = k[parsed.notna()]
        parsed = parsed[parsed.notna()]
        k["celltype"] = [p[0] for p in parsed]
        k["pct"] = [p[1] for p in parsed]
        return k

    k = annotate(metrics)
    if k.empty:
        raise ValueError("metrics table has no 'kbet_acceptance' rows with groups like 'kbet@5%' or "
                         "'<cell type>|kbet@5%'; run the evaluate rule with kbet enabled")
    avg = k[k["celltype"].isna()][["method", "pct", "value", "note"] if "note" in k else ["method", "pct", "value"]]
    per_type = k[k["celltype"].notna()]
    if avg.empty and not per_type.empty:  # average over cell types ourselves
        avg = per_type.groupby(["method", "pct"], as_index=False)["value"].mean()
    rep_avg = None
    if repeats is not None and len(repeats):
        _check_tidy(repeats, "repeats table", ("repeat",))
        r = annotate(repeats)
        if not r.empty:
            ra = r[r["celltype"].isna()]
            if ra.empty:
                ra = r.groupby(["method", "pct", "repeat"], as_index=False)["value"].mean()
            rep_avg = (ra, r[r["celltype"].notna()])
    return avg, per_type, rep_avg


def kbet_curves(
    metrics: pd.DataFrame,
    repeats: pd.DataFrame | None,
    out_png: str | os.PathLike,
    *,
    title: str | None = None,
    by_celltype: bool = True,
):
    """Figs 2g / 3g / 4b: kBET acceptance vs neighbourhood size (% of each cell type), one line per method.

    The first panel is the average over cell types (group ``kbet@<pct>%``, or the mean of the per-type rows
    where the table has no average); with ``by_celltype`` one small panel per cell type follows
    (groups ``<cell type>|kbet@<pct>%``). Shaded bands: interquartile range over the kBET repeats, taken from
    ``repeats`` (same columns plus ``repeat``) when given. NaN values (cell type too small, one batch) leave
    gaps, and a panel with no value at all says "not computable".
    """
    _check_tidy(metrics, "metrics table")
    avg, per_type, rep = _kbet_frames(metrics, repeats)
    # every method with kBET rows, including failed ones (NaN rows under group 'all'): listed as "no values"
    methods = order_methods(metrics.loc[metrics["metric"] == "kbet_acceptance", "method"].unique())
    types = sorted(per_type["celltype"].unique(), key=str) if by_celltype else []
    panels = [(None, "all cell types (mean)")] + [(t, str(t)) for t in types]
    ncols = 1 if len(panels) == 1 else min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig_w = HALF_WIDTH if ncols == 1 else FULL_WIDTH
    panel_h = 1.55 if ncols > 1 else 2.3
    legend_h = 0.32 * math.ceil(len(methods) / (6 if ncols > 1 else 3))
    title_h = 0.3 if title else 0.2
    fig_h = min(nrows * panel_h + legend_h + title_h + 0.1, MAX_HEIGHT)
    with figure_style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(fig_w, fig_h), squeeze=False, sharex=True, sharey=True)
        fig.subplots_adjust(left=0.1 if ncols > 1 else 0.17, right=0.98, bottom=(legend_h + 0.45) / fig_h,
                            top=1 - title_h / fig_h - 0.02, wspace=0.12, hspace=0.35 if nrows > 1 else 0.2)
        for ax in axes.ravel()[len(panels):]:
            ax.axis("off")
        pcts = sorted(pd.concat([avg["pct"], per_type["pct"]]).unique())
        for (ctype, label), ax in zip(panels, axes.ravel()):
            ax.set_title(label, pad=2, fontweight="bold" if ctype is None else "normal")
            data = avg if ctype is None else per_type[per_type["celltype"] == ctype]
            any_value = False
            for mi, m in enumerate(methods):
                d = data[data["method"] == m].sort_values("pct")
                if d.empty:
                    continue
                c = method_color(m)
                # dodge methods slightly along x so equal values (often 0 or 1) do not hide each other
                dx = (mi - (len(methods) - 1) / 2) * 0.25
                if rep is not None:
                    rr = rep[0] if ctype is None else rep[1][rep[1]["celltype"] == ctype]
                    rr = rr[rr["method"] == m]
                    if len(rr):
                        q = rr.groupby("pct")["value"].quantile([0.25, 0.75]).unstack().dropna()
                        if len(q):
                            ax.fill_between(q.index + dx, q[0.25], q[0.75], color=c, alpha=0.18, lw=0)
                v = d["value"].to_numpy(float)
                any_value |= bool(np.isfinite(v).any())
                ax.plot(d["pct"] + dx, v, color=c, marker="o", ms=2.5, lw=1.1)
            if not any_value:
                note = _first_note(data["note"]) if "note" in data else ""
                note = "\n" + _shorten(note, 40) if note else ""
                ax.text(0.5, 0.5, "not computable" + note, ha="center", va="center", transform=ax.transAxes,
                        fontsize=5.5, color="0.4")
            ax.set_ylim(-0.02, 1.02)
            ax.set_xticks(pcts)
            ax.set_xticklabels([f"{p:g}" for p in pcts])
            ax.grid(True, axis="y", lw=0.3, color="0.92")
        for ax in axes[:, 0]:
            ax.set_ylabel("kBET acceptance")
        for ax in axes.ravel()[max(0, len(panels) - ncols): len(panels)]:
            ax.tick_params(labelbottom=True)
        xlabel = "neighbourhood size (% of cell type)"
        if ncols == 1:
            axes[-1, 0].set_xlabel(xlabel)
        else:
            fig.text(0.5 + 0.04, (legend_h + 0.08) / fig_h, xlabel, ha="center", va="bottom")
        valued = set(avg.loc[avg["value"].notna(), "method"]) | set(per_type.loc[per_type["value"].notna(), "method"])
        handles = [Line2D([], [], color=method_color(m), marker="o", ms=3,
                          label=method_label(m) + ("" if m in valued else " (no values)")) for m in methods]
        if rep is not None:
            handles.append(Patch(color="0.6", alpha=0.3, label="IQR over repeats"))
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6 if ncols > 1 else 3),
                   bbox_to_anchor=(0.5, 0.005), handlelength=1.5, columnspacing=1.0)
        if title:
            suptitle(fig, title, y=1 - 0.04 / fig_h, va="top")
        return save_figure(fig, out_png)


def _summary_values(summary: pd.DataFrame) -> pd.DataFrame:
    """One value per (application, method, metric): group 'all', or the mean of the kBET average groups."""
    s = summary.copy()
    s["group"] = s["group"].astype(str)
    out = s[s["group"] == "all"][["application", "method", "metric", "value"]]
    k = s[(s["metric"] == "kbet_acceptance") & s["group"].map(lambda g: (p := parse_kbet_group(g)) is not None
                                                               and p[0] is None)]
    have = set(zip(out["application"], out["method"], out["metric"]))
    if len(k):
        km = k.groupby(["application", "method"], as_index=False)["value"].mean()
        km["metric"] = "kbet_acceptance"
        km = km[[(a, m, "kbet_acceptance") not in have for a, m in zip(km["application"], km["method"])]]
        out = pd.concat([out, km[["application", "method", "metric", "value"]]], ignore_index=True)
    return out.drop_duplicates(["application", "method", "metric"])


def _minmax_good(col: pd.Series) -> pd.Series:
    """Min–max scale one metric over methods so that 1 = best (flipped for lower-is-better metrics);
    a metric on which all methods tie scores 1 everywhere; NaN stays NaN."""
    v = col.to_numpy(float)
    lo, hi = np.nanmin(v) if np.isfinite(v).any() else np.nan, np.nanmax(v) if np.isfinite(v).any() else np.nan
    out = np.ones_like(v) if hi == lo else (v - lo) / (hi - lo)
    if col.name in LOWER_IS_BETTER:
        out = 1 - out if hi != lo else out
    out[~np.isfinite(v)] = np.nan
    return pd.Series(out, index=col.index)


def summary_columns(present) -> list[str]:
    """The summary heatmap's default columns: every metric in ``present`` except diagnostics (``_null``,
    ``_median``, ``_norm``), the known ones in :data:`METRIC_LABELS` order (Tran's ARI first, then the
    clustering-free / Leiden conservation scores, kBET, LISI, ASW, graph connectivity), then the rest sorted."""
    shown = [m for m in dict.fromkeys(present) if not str(m).endswith(_SUMMARY_SKIP_SUFFIXES)]
    return [m for m in _METRIC_ORDER if m in shown] + sorted(m for m in shown if m not in _METRIC_ORDER)


def summary_heatmap(summary: pd.DataFrame, out_png: str | os.PathLike, *, metrics: list[str] | None = None):
    """Beyond the paper: methods × metrics per application, scIB style.

    Each application is one block of rows (methods); each column a metric. The colour is the score scaled
    within the application and metric (min–max over methods; 1 = best, direction-aware for lower-is-better
    metrics such as cLISI or run time), the text the raw value. kBET uses group ``all`` when present, else
    the mean over the ``kbet@<pct>%`` sizes. NaN (failed or not computable) cells are hatched.

    Parameters
    ----------
    summary
        ``results/summary.tsv``: the tidy columns with ``application``.
    metrics
        Metric columns to show, in order (default: every metric present except diagnostics ending in
        ``_null``, ``_median`` or ``_norm``; known ones first in a fixed order).
    """
    _check_tidy(summary, "summary table", ("application",))
    vals = _summary_values(summary)
    if vals.empty:
        raise ValueError("summary table has no rows with group 'all' or kBET average groups; nothing to plot")
    present = list(vals["metric"].unique())
    if metrics is None:
        metrics = summary_columns(present)
    else:
        unknown = [m for m in metrics if m not in present]
        if unknown:
            raise ValueError(f"metrics {unknown} are not in the summary table; available: {present}")
    apps = list(dict.fromkeys(summary["application"]))
    blocks = []
    for app in apps:
        v = vals[vals["application"] == app]
        wide = v.pivot_table(index="method", columns="metric", values="value", aggfunc="first", dropna=False)
        wide = wide.reindex(index=order_methods(wide.index), columns=metrics)
        scaled = wide.apply(_minmax_good, axis=0)
        blocks.append((app, wide, scaled))
    nrows_total = sum(len(b[1]) for b in blocks)
    cell_w = min(0.62, (FULL_WIDTH - 1.7) / max(len(metrics), 1))
    cell_h = 0.2
    head_h = 0.85
    gap = 0.28
    left_w, right_w = 0.95, 0.75
    fig_w = left_w + cell_w * len(metrics) + right_w
    fig_h = min(head_h + cell_h * nrows_total + gap * len(blocks) + 0.5, MAX_HEIGHT)
    cmap = plt.get_cmap("YlGnBu")
    with figure_style():
        fig = plt.figure(figsize=(fig_w, fig_h))
        ax = fig.add_axes([left_w / fig_w, 0.5 / fig_h, cell_w * len(metrics) / fig_w, 1 - (head_h + 0.5) / fig_h])
        y = 0.0
        yticks, ylabels = [], []
        for app, wide, scaled in blocks:
            ax.text(-0.05 * 0, y - 0.15, app, fontweight="bold", fontsize=6.5, va="bottom", ha="left")
            y += 0.05
            for meth in wide.index:
                for j, met in enumerate(metrics):
                    val, sc = wide.at[meth, met], scaled.at[meth, met]
                    if pd.isna(val):
                        ax.add_patch(Rectangle((j, y), 1, 1, facecolor="white", edgecolor="0.8", hatch="////", lw=0.3))
                        continue
                    colour = cmap(0.1 + 0.8 * float(sc))
                    ax.add_patch(Rectangle((j, y), 1, 1, facecolor=colour, edgecolor="white", lw=0.6))
                    txt = f"{val:.2f}" if abs(val) < 100 else f"{val:.3g}"
                    ax.text(j + 0.5, y + 0.5, txt, ha="center", va="center", fontsize=5.5,
                            color="white" if sc > 0.6 else "black")
                yticks.append(y + 0.5)
                ylabels.append(method_label(meth))
                y += 1
            y += gap / cell_h
        ax.set_xlim(0, len(metrics))
        ax.set_ylim(y - gap / cell_h, -0.9)
        ax.set_yticks(yticks)
        ax.set_yticklabels(ylabels)
        for tick, meth in zip(ax.get_yticklabels(), [m for _, w, _ in blocks for m in w.index]):
            tick.set_color(method_color(meth))
        ax.xaxis.tick_top()
        ax.set_xticks(np.arange(len(metrics)) + 0.5)
        ax.set_xticklabels([_metric_label(m) + (" ↓" if m in LOWER_IS_BETTER else "") for m in metrics],
                           rotation=40, ha="left", rotation_mode="anchor")
        ax.tick_params(length=0)
        for s in ax.spines.values():
            s.set_visible(False)
        fig.text(0.01, 0.012, "colour: score scaled within application (min–max over methods, dark = best); "
                 "text: raw value; hatched: NaN", fontsize=5.5, color="0.35")
        return save_figure(fig, out_png)
