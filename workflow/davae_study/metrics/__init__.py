"""Integration metrics: ARI (Tran et al. 2020), kBET (faithful to theislab/kBET), LISI, batch ASW and graph
connectivity (scIB definitions), kNN cell-type purity and Leiden NMI/ARI at the best resolution (scIB
protocol), all writing the tidy table of docs/CONTRACTS.md.

Public entry points: :func:`evaluate` (one integrated AnnData -> tidy + per-repeat tables, every configured
metric, never raising for a failed method), :func:`score` (one metric of one AnnData -> overall values +
tidy per-group table + per-repeat table) and :func:`summarise` (Tran's normalised ARI scores and F1 across
methods). Definitions: docs/metrics.md.
The single-call functions live in their modules (``davae_study.metrics.kbet.kbet``,
``davae_study.metrics.lisi.lisi``), whose names they share; :func:`knn_purity` (tidy rows) and
:func:`leiden_nmi_ari` (a dict) are also exported for direct use.
"""

from .ari import ari_tran
from .asw import asw_batch
from .evaluate import DEFAULTS, METRIC_NAMES, evaluate, resolve_params, score, summarise
from .graph import graph_connectivity
from .kbet import KBETResult, chi2_pvalues, default_test_size, kbet_per_celltype, kbet_pooled
from .leiden import leiden_nmi_ari
from .purity import knn_purity

__all__ = [
    "DEFAULTS", "METRIC_NAMES", "KBETResult", "ari_tran", "asw_batch", "chi2_pvalues", "default_test_size",
    "evaluate", "graph_connectivity", "kbet_per_celltype", "kbet_pooled", "knn_purity", "leiden_nmi_ari",
    "resolve_params", "score", "summarise",
]
