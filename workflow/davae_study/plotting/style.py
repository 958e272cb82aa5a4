"""One visual style for every figure of the study.

* **Methods** get a colour fixed by name (case-insensitive, aliases folded), so DAVAE is the same red in
  every figure of every application; an unknown method gets a stable colour derived from its name.
* **Batches and cell types** get colours by their position in the *sorted* list of categories, so the same
  application always colours the same category the same way, whatever order a table happens to list them in.
* Sizes are in inches and fit a journal page: :data:`FULL_WIDTH` (183 mm, two columns) and
  :data:`HALF_WIDTH` (89 mm, one column). Figures are saved at :data:`DPI`, without tight bounding boxes,
  so a figure of ``w × h`` inches is exactly ``round(w·DPI) × round(h·DPI)`` pixels.
* :func:`save_figure` writes the PNG and a PDF beside it, each atomically.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on cluster nodes; set before pyplot is imported anywhere
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from davae_study.io import atomic_path  # noqa: E402

__all__ = [
    "DPI",
    "FULL_WIDTH",
    "HALF_WIDTH",
    "MAX_HEIGHT",
    "METHOD_COLORS",
    "METHOD_LABELS",
    "category_colors",
    "figure_style",
    "method_color",
    "method_colors",
    "method_label",
    "natural_key",
    "order_methods",
    "point_size",
    "register_method_labels",
    "save_figure",
]

DPI = 200
FULL_WIDTH = 7.2  # inches, 183 mm: a two-column figure
HALF_WIDTH = 3.5  # inches, 89 mm: a one-column figure
MAX_HEIGHT = 9.4  # inches, the printable height of a page less a caption

# Canonical names (lower case) → display label and colour. Colour-blind-aware picks from Okabe–Ito and
# Tableau; RAW (uncorrected) is neutral grey so every correction method stands out against it.
_CANONICAL: dict[str, tuple[str, str]] = {
    "raw": ("RAW", "#7f7f7f"),
    "davae": ("DAVAE", "#d62728"),
    "davae_released": ("DAVAE (as released)", "#f4a582"),
    "scanorama": ("Scanorama", "#1f77b4"),
    "desc": ("DESC", "#2ca02c"),
    "harmony": ("Harmony", "#9467bd"),
    "seurat": ("Seurat", "#ff7f0e"),
    "scvi": ("scVI", "#8c564b"),
    "mnn": ("MNN", "#e377c2"),
    "bbknn": ("BBKNN", "#17becf"),
    "combat": ("ComBat", "#bcbd22"),
}
_ALIASES: dict[str, str] = {
    "pca": "raw",
    "uncorrected": "raw",
    "unintegrated": "raw",
    "none": "raw",
    "fastmnn": "mnn",
    "mnncorrect": "mnn",
}
# Display order: the paper's columns first, then the extras.
_ORDER = list(_CANONICAL)

METHOD_COLORS: dict[str, str] = {k: v[1] for k, v in _CANONICAL.items()}
METHOD_LABELS: dict[str, str] = {k: v[0] for k, v in _CANONICAL.items()}

# For methods not listed above: colours none of the listed methods use.
_EXTRA_METHOD_COLORS = ["#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354"]

# Categorical palettes for batches and cell types (by sorted position).
_PALETTE_20 = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5",
    "#7f7f7f", "#c7c7c7",
]
# 21-30 categories (e.g. the ~26 Visium clusters): the dark tab20b shades added to the 20 above.
_PALETTE_30 = _PALETTE_20 + ["#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#5254a3", "#8ca252",
                             "#bd9e39", "#ad494a", "#a55194"]
_BATCH_PALETTE = ["#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb", "#000000"]


def _canonical(name: str) -> str:
    """Lower-case and fold aliases (``pca`` → ``raw``) for colour and label lookup."""
    key = str(name).strip().lower()
    return _ALIASES.get(key, key)


def method_color(name: str) -> str:
    """Colour of a method, fixed by its name (case-insensitive; ``pca``/``uncorrected`` are ``RAW``).

    Variants such as ``davae_default`` keep their own colour derived from the name (stable across runs),
    so two variants of one method can appear side by side.
    """
    key = _canonical(name)
    if key in METHOD_COLORS:
        return METHOD_COLORS[key]
    return _EXTRA_METHOD_COLORS[zlib.crc32(key.encode()) % len(_EXTRA_METHOD_COLORS)]


def method_colors(names: Iterable[str]) -> dict[str, str]:
    """``{name: colour}`` for each method name."""
    return {n: method_color(n) for n in names}


_CONFIG_LABELS: dict[str, str] = {}


def register_method_labels(labels: dict[str, str | None]) -> None:
    """Use these display labels (e.g. the config's ``methods.<name>.label``) for the given method names;
    ``None`` values are ignored. Colours stay fixed by name."""
    _CONFIG_LABELS.update({str(k): str(v) for k, v in labels.items() if v})


def method_label(name: str) -> str:
    """Display label of a method: a registered (config) label, else the built-in one (``davae`` → ``DAVAE``,
    ``pca`` → ``RAW``); unknown names unchanged."""
    if str(name) in _CONFIG_LABELS:
        return _CONFIG_LABELS[str(name)]
    return METHOD_LABELS.get(_canonical(name), str(name))


def order_methods(names: Iterable[str]) -> list[str]:
    """Methods in the paper's order (RAW, DAVAE, Scanorama, DESC), then the others alphabetically."""
    names = list(dict.fromkeys(names))

    def rank(n: str) -> tuple[int, str]:
        key = _canonical(n)
        return (_ORDER.index(key) if key in _ORDER else len(_ORDER), str(n).lower())

    return sorted(names, key=rank)


def _sorted_categories(values: Sequence | pd.Series | pd.Index) -> list:
    s = pd.Series(values)
    cats = s.cat.categories if isinstance(s.dtype, pd.CategoricalDtype) else pd.unique(s.dropna())
    return sorted((c for c in cats if not (isinstance(c, float) and np.isnan(c))), key=natural_key)


def natural_key(value) -> tuple:
    """Sort key that orders numbers numerically and text alphabetically, numbers first
    (cluster ``'2'`` before ``'10'``; batch ``1`` before ``'1b'``), so a table read back from TSV (where
    ``'1'`` became ``1``) sorts like the original."""
    text = str(value)
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text.lower())


def category_colors(values: Sequence | pd.Series | pd.Index, kind: str = "label") -> dict:
    """``{category: colour}`` by position in the sorted categories (stable across figures and tables).

    Parameters
    ----------
    values
        The categories, or a column holding them (a categorical's full category list is used, so a
        subset of cells gets the same colours as the whole set).
    kind
        ``"batch"`` (a short, high-contrast palette) or ``"label"`` (cell types, clusters: 20 colours,
        30 for up to 30 categories, scanpy's 102-colour palette beyond, then a hue wheel).
    """
    if kind not in ("batch", "label"):
        raise ValueError(f"kind must be 'batch' or 'label', got {kind!r}")
    cats = _sorted_categories(values)
    n = len(cats)
    if kind == "batch" and n <= len(_BATCH_PALETTE):
        cols = _BATCH_PALETTE[:n]
    elif n <= len(_PALETTE_30):
        cols = (_PALETTE_20 if n <= 20 else _PALETTE_30)[:n]
    elif n <= 102:
        from scanpy.plotting.palettes import default_102  # scanpy's 102 distinguishable colours

        cols = list(default_102[:n])
    else:
        cmap = plt.get_cmap("hsv")
        cols = [matplotlib.colors.to_hex(cmap(x)) for x in np.linspace(0, 1, n, endpoint=False)]
    return dict(zip(cats, cols))


def point_size(n: int, panel_inches: float = 1.5) -> float:
    """Marker area (pt²) for a scatter of ``n`` points in a panel ``panel_inches`` wide (scanpy-like)."""
    return float(np.clip(1200.0 * panel_inches**2 / max(n, 1), 0.3, 8.0))


_RC = {
    "font.size": 7,
    "axes.titlesize": 7.5,
    "axes.labelsize": 7,
    "xtick.labelsize": 6,
    "ytick.labelsize": 6,
    "legend.fontsize": 6,
    "legend.title_fontsize": 6.5,
    "figure.titlesize": 8.5,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.5,
    "ytick.major.width": 0.5,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "lines.linewidth": 1.2,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "pdf.fonttype": 42,  # editable text in Illustrator/Inkscape
    "ps.fonttype": 42,
    "font.family": "DejaVu Sans",
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "image.cmap": "viridis",
}


@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    """Context in which every figure function of the study draws (fonts, line widths, spines)."""
    with plt.rc_context(_RC):
        yield


def save_figure(fig: matplotlib.figure.Figure, out_png: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``fig`` to ``out_png`` and to the ``.pdf`` beside it, each atomically; close the figure.

    The figure keeps its size (no tight bounding box), so the PNG is ``figsize × DPI`` pixels.
    """
    out_png = Path(out_png)
    if out_png.suffix.lower() != ".png":
        raise ValueError(f"out_png must end in .png (the .pdf is written beside it), got {out_png}")
    out_pdf = out_png.with_suffix(".pdf")
    try:
        with atomic_path(out_png) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI)
        with atomic_path(out_pdf) as tmp:
            fig.savefig(tmp, format="pdf", dpi=DPI)
    finally:
        plt.close(fig)
    return out_png, out_pdf


def fit_title(title: str, width_in: float, fontsize: float = 8.5, bold: bool = True) -> tuple[str, float]:
    """A title that fits on one line of ``width_in`` inches: the font shrinks down to 6.5 pt, then the text
    is shortened with an ellipsis (the report caption carries the full title)."""
    per_char = 0.62 if bold else 0.56  # average glyph width of DejaVu Sans, in units of the font size
    size = fontsize
    while size > 6.5 and len(title) * per_char * size > width_in * 72 * 0.96:
        size -= 0.5
    max_chars = int(width_in * 72 * 0.96 / (per_char * size))
    if len(title) > max_chars:
        title = title[: max(max_chars - 1, 1)].rstrip() + "…"
    return title, size


def suptitle(fig: matplotlib.figure.Figure, title: str, **kwargs) -> None:
    """``fig.suptitle`` in bold, fitted to the figure's width (:func:`fit_title`)."""
    text, size = fit_title(title, fig.get_figwidth())
    fig.suptitle(text, fontweight="bold", fontsize=size, **kwargs)


def empty_panel(ax: matplotlib.axes.Axes, message: str, frame: bool = False) -> None:
    """Blank an axis and write ``message`` in its centre (failed method, missing gene, no data);
    ``frame`` keeps a light outline so the panel reads as part of a grid."""
    ax.set_xticks([])
    ax.set_yticks([])
    for sp in ax.spines.values():
        sp.set_visible(frame)
        sp.set_color("0.85")
        sp.set_linewidth(0.4)
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4", fontsize=6.5,
            wrap=True)
