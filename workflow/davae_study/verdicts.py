"""Reproduction verdicts: every claim of the paper (``config/claims.yaml``) judged against the measured tables.

A claim names a figure, a paper application, the metric(s) it rests on and a comparison:

``best``            the judged method is the best of all methods (strictly: a tie counts against it)
``top_k``           the judged method and the ``with`` methods are the ``k`` best (each strictly above the rest)
``better_than``     the judged method beats each ``against`` method (or a ``threshold``); with
                    ``test: wilcoxon`` by a one-sided Wilcoxon signed-rank test over the per-repeat values
``not_worse_than``  the judged method is at least the ``against`` method's value minus ``tolerance``
``not_testable``    a claim the study cannot measure (the ``reason`` says why)

``per: [cell_type]``, ``per: [size]`` or both make the comparison hold in every cell type / at every
neighbourhood size (kBET ``kbet@5%`` groups; ``cells=N`` in the scaling table) instead of the ``all`` row.
Values within ``tolerance`` (default 0) of each other are ties. NaN rows are explicit: a competitor
without a value (a failed method) is left out of the comparison and named; a judged method without one is
``not supported`` when it failed and ``not testable here`` when the value is undefined for the data (the
note says why); a group where no method has a value is skipped and named. Sub-results (metrics, groups,
competitors) combine as: any ``not supported`` → ``not supported``; else any ``not testable here`` →
``not testable here``; else ``supported``.

Every claim is judged once per judged method (``verdicts.judge``: the released DAVAE ``davae_released`` and
the study's ``davae``); the other judged methods are left out of the field, so each DAVAE competes with the
baselines only. Entry point: :func:`write_verdicts` (rule ``verdicts``); :func:`judge_claims` works on
tables in memory; :func:`markdown_table` renders ``verdicts.tsv`` for the README (``python -m
davae_study.verdicts results/verdicts.tsv``). Definitions and proxies: docs/verdicts.md.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .io import write_tsv

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
NOT_TESTABLE = "not testable here"

VERDICT_COLUMNS = ["claim_id", "figure", "claim", "application", "method", "evidence", "verdict", "reason"]
"""Columns of ``results/verdicts.tsv`` (docs/CONTRACTS.md)."""

COMPARISONS = ("best", "top_k", "better_than", "not_worse_than", "not_testable")
SOURCES = ("metrics", "spatial", "scaling", "scaling_growth")
LOWER_IS_BETTER = frozenset({"runtime_s", "peak_rss_mb", "runtime_exponent"})
"""Metrics where a lower value is better (a claim's ``direction`` overrides)."""

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "claims.schema.yaml"
_TIDY = ["application", "method", "metric", "group", "value", "n", "note"]


# ----------------------------------------------------------------------------------------------------------
# claims file
# ----------------------------------------------------------------------------------------------------------
class ClaimsError(ValueError):
    """The claims table is invalid; the message names the entry and the fix."""


def load_claims(source: str | Path | Mapping[str, Any] | Sequence[Mapping[str, Any]],
                schema: str | Path = SCHEMA) -> list[dict[str, Any]]:
    """Read and validate a claims table (a YAML path, a mapping with ``claims:``, or the list itself).

    Raises :class:`ClaimsError` with one line naming the claim and the problem.
    """
    import jsonschema
    import yaml

    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ClaimsError(f"claims table {path} not found; set verdicts.claims to the claims YAML (config/claims.yaml)")
        with open(path) as fh:
            source = yaml.safe_load(fh)
    doc = {"claims": list(source)} if isinstance(source, Sequence) and not isinstance(source, str) else source
    with open(schema) as fh:
        validator = jsonschema.Draft202012Validator(yaml.safe_load(fh))
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ClaimsError(f"claims table error at {where}: {err.message} (see docs/verdicts.md)")
    claims = [dict(c) for c in doc["claims"]]
    seen: set[str] = set()
    for c in claims:
        if c["id"] in seen:
            raise ClaimsError(f"claims table error: id {c['id']!r} appears twice; give each claim its own id")
        seen.add(c["id"])
        kind = c["compare"]
        if kind == "top_k" and len(c.get("with", [])) + 1 > c.get("k", 2):
            raise ClaimsError(f"claims table error at {c['id']}: 'with' names more methods than k - 1")
        if kind in ("better_than", "not_worse_than") and not c.get("against") and c.get("threshold") is None:
            raise ClaimsError(f"claims table error at {c['id']}: {kind} needs 'against' methods or a 'threshold'")
        if kind != "not_testable" and not c.get("metrics"):
            raise ClaimsError(f"claims table error at {c['id']}: {kind} needs 'metrics'")
        if c.get("test") and kind != "better_than":
            raise ClaimsError(f"claims table error at {c['id']}: 'test' applies to better_than only")
    return claims


# ----------------------------------------------------------------------------------------------------------
# outcomes
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    verdict: str
    evidence: str = ""
    reason: str = ""
    group: str = "all"


def combine(parts: Sequence[Outcome], sep: str = "; ") -> Outcome:
    """Any ``not supported`` → not supported; else any ``not testable here`` → not testable; else supported."""
    verdicts = {p.verdict for p in parts}
    if not parts:
        return Outcome(NOT_TESTABLE, "", "nothing to compare")
    verdict = NOT_SUPPORTED if NOT_SUPPORTED in verdicts else NOT_TESTABLE if NOT_TESTABLE in verdicts else SUPPORTED
    evidence = sep.join(p.evidence for p in parts if p.evidence)
    reasons = list(dict.fromkeys(p.reason for p in parts if p.reason))
    return Outcome(verdict, evidence, sep.join(reasons))


def fmt(v: float) -> str:
    """A metric value: 3 decimals (whole numbers from 100 on, e.g. seconds); NA for NaN."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "NA"
    v = float(v)
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.3f}".replace("-0.000", "0.000")


def fmt_p(p: float) -> str:
    """A p-value: two significant digits (1.9e-06, 0.041)."""
    return "NA" if p is None or math.isnan(p) else f"{p:.2g}"


def _tie_text(ties: Sequence[str], tol: float) -> str:
    if not ties:
        return ""
    return f" (tied: {', '.join(ties)})" if tol == 0 else f" (tied within {fmt(tol)}: {', '.join(ties)})"


def _failed(note: str) -> bool:
    return str(note).startswith("method failed")


def _short(note: str, limit: int = 80) -> str:
    note = " ".join(str(note).split())
    return note if len(note) <= limit else note[: limit - 1] + "…"


@dataclass
class Field:
    """One metric in one group: each method's value and note; ``better`` orders values."""

    values: dict[str, float]
    notes: dict[str, str] = field(default_factory=dict)
    lower: bool = False

    def better(self, a: float, b: float, tol: float) -> bool:
        """a beats b by more than tol."""
        return (b - a > tol) if self.lower else (a - b > tol)

    def ranked(self, methods: Iterable[str]) -> list[str]:
        ms = [m for m in methods if not math.isnan(self.values.get(m, np.nan))]
        return sorted(ms, key=lambda m: self.values[m], reverse=not self.lower)

    def ranking(self, methods: Iterable[str]) -> str:
        return ", ".join(f"{m} {fmt(self.values[m])}" for m in self.ranked(methods))

    def missing(self, methods: Iterable[str]) -> list[str]:
        return [m for m in methods if math.isnan(self.values.get(m, np.nan))]

    def nan_text(self, methods: Iterable[str]) -> str:
        out = [f"{m} NA ({_short(self.notes.get(m, '') or 'no row')})" for m in methods]
        return ", ".join(out)


def _subject_missing(f: Field, subject: str) -> Outcome | None:
    if not math.isnan(f.values.get(subject, np.nan)):
        return None
    note = f.notes.get(subject, "")
    if _failed(note):
        return Outcome(NOT_SUPPORTED, f"{subject} NA", f"{subject} failed: {_short(note)}")
    return Outcome(NOT_TESTABLE, f"{subject} NA", f"no value for {subject}: {_short(note) or 'no row in the table'}")


def _dropped(f: Field, others: Sequence[str]) -> str:
    gone = f.missing(others)
    return f"left out (no value): {f.nan_text(gone)}" if gone else ""


def compare_best(f: Field, subject: str, others: Sequence[str], tol: float = 0.0) -> Outcome:
    """``subject`` strictly better than every other method with a value (ties count against it)."""
    if (o := _subject_missing(f, subject)) is not None:
        return o
    rivals = [m for m in others if m != subject and not math.isnan(f.values.get(m, np.nan))]
    dropped = _dropped(f, [m for m in others if m != subject])
    if not rivals:
        return Outcome(NOT_TESTABLE, f"{subject} {fmt(f.values[subject])}",
                       "; ".join(filter(None, ["no other method has a value", dropped])))
    evidence = f.ranking([subject, *rivals])
    v = f.values[subject]
    beaten_by = [m for m in rivals if not f.better(v, f.values[m], tol)]
    if not beaten_by:
        return Outcome(SUPPORTED, evidence, dropped)
    ties = [m for m in beaten_by if abs(f.values[m] - v) <= tol]
    why = f"not best: {', '.join(beaten_by)} at least as good" + _tie_text(ties, tol)
    return Outcome(NOT_SUPPORTED, evidence, "; ".join(filter(None, [why, dropped])))


def compare_top_k(f: Field, subject: str, others: Sequence[str], with_: Sequence[str], k: int = 2,
                  tol: float = 0.0) -> Outcome:
    """``subject`` and ``with_`` are the ``k`` best: each strictly better than every method outside the group
    (a method tied with the group's weakest breaks the claim). With fewer than ``k`` named methods the group
    holds the named ones plus the best of the rest."""
    if (o := _subject_missing(f, subject)) is not None:
        return o
    group = [subject, *with_]
    field_methods = list(dict.fromkeys([subject, *with_, *others]))
    evidence = f.ranking(field_methods)
    dropped = _dropped(f, [m for m in field_methods if m != subject])
    gone = [m for m in with_ if math.isnan(f.values.get(m, np.nan))]
    if gone:
        return Outcome(NOT_SUPPORTED, evidence, f"{', '.join(gone)} (named among the top {k}) has no value; {dropped}")
    rest = [m for m in field_methods if m not in group and not math.isnan(f.values.get(m, np.nan))]
    if len(group) < k:  # fill the group with the best of the rest
        extra = f.ranked(rest)[: k - len(group)]
        group += extra
        rest = [m for m in rest if m not in extra]
    if not rest:
        return Outcome(NOT_TESTABLE, evidence, f"no method outside the top {k} has a value; {dropped}".strip("; "))
    weakest = min(f.values[m] for m in group) if not f.lower else max(f.values[m] for m in group)
    intruders = [m for m in rest if not f.better(weakest, f.values[m], tol)]
    if not intruders:
        return Outcome(SUPPORTED, evidence, dropped)
    ties = [m for m in intruders if abs(f.values[m] - weakest) <= tol]
    why = f"{', '.join(intruders)} at least as good as {'/'.join(group)}" + _tie_text(ties, tol)
    return Outcome(NOT_SUPPORTED, evidence, "; ".join(filter(None, [why, dropped])))


def wilcoxon_greater(a: Mapping[int, float], b: Mapping[int, float], lower: bool = False) -> tuple[float, int, str]:
    """One-sided Wilcoxon signed-rank test that ``a`` beats ``b`` over the repeats both have (paired by repeat
    index). Returns ``(p, n_pairs, note)``; ``p`` is 1 when every paired difference is zero and NaN without
    pairs. Zero differences are dropped (scipy's ``zero_method='wilcox'``)."""
    from scipy.stats import wilcoxon

    keys = sorted(set(a) & set(b))
    x = np.array([a[k] for k in keys], float)
    y = np.array([b[k] for k in keys], float)
    ok = np.isfinite(x) & np.isfinite(y)
    d = (y - x if lower else x - y)[ok]
    if d.size == 0:
        return float("nan"), 0, "no paired repeats"
    if np.all(d == 0):
        return 1.0, int(d.size), "all paired differences are zero"
    res = wilcoxon(d, alternative="greater", zero_method="wilcox")
    return float(res.pvalue), int(d.size), ""


def compare_better(f: Field, subject: str, against: Sequence[str], *, tol: float = 0.0,
                   threshold: float | None = None, test: str | None = None, alpha: float = 0.05,
                   repeats: Mapping[str, Mapping[int, float]] | None = None, unknown: Mapping[str, str] | None = None,
                   not_worse: bool = False) -> Outcome:
    """``subject`` beats each ``against`` method (by more than ``tol``; ``not_worse``: is at least its value
    minus ``tol``) or the ``threshold``; ``test='wilcoxon'``: one-sided signed-rank over ``repeats`` (per
    method: repeat → value) with ``p < alpha``. ``unknown``: against methods not in the study → reason."""
    if (o := _subject_missing(f, subject)) is not None:
        return o
    v = f.values[subject]
    parts: list[Outcome] = []
    rel = "≥" if not_worse else ">"
    if threshold is not None:
        op = ("≤" if not_worse else "<") if f.lower else rel
        ok = (v <= threshold + tol if not_worse else v < threshold - tol) if f.lower else \
             (v >= threshold - tol if not_worse else v > threshold + tol)
        parts.append(Outcome(SUPPORTED if ok else NOT_SUPPORTED, f"{subject} {fmt(v)} vs threshold {fmt(threshold)}",
                             "" if ok else f"{subject} {fmt(v)} is not {op} {fmt(threshold)}"))
    for m in against:
        if unknown and m in unknown:
            parts.append(Outcome(NOT_TESTABLE, "", unknown[m]))
            continue
        w = f.values.get(m, np.nan)
        if math.isnan(w):
            parts.append(Outcome(NOT_TESTABLE, f"{subject} {fmt(v)} vs {m} NA",
                                 f"no value for {m}: {_short(f.notes.get(m, '') or 'no row in the table')}"))
            continue
        if test == "wilcoxon":
            p, n, note = wilcoxon_greater((repeats or {}).get(subject, {}), (repeats or {}).get(m, {}), f.lower)
            ev = f"{subject} {fmt(v)} vs {m} {fmt(w)}, one-sided Wilcoxon p={fmt_p(p)} (n={n} paired repeats)"
            if n == 0:
                parts.append(Outcome(NOT_TESTABLE, ev, f"no per-repeat values for {subject} and {m}"))
            elif p < alpha:
                parts.append(Outcome(SUPPORTED, ev))
            else:
                parts.append(Outcome(NOT_SUPPORTED, ev, f"not significant at alpha={alpha:g}" + (f" ({note})" if note else "")))
            continue
        ok = (not f.better(w, v, tol)) if not_worse else f.better(v, w, tol)
        ev = f"{subject} {fmt(v)} vs {m} {fmt(w)}"
        why = "" if ok else (f"{m} better by more than {fmt(tol)}" if not_worse else
                             f"{subject} not better than {m}" + (" (tie)" if abs(v - w) <= tol else ""))
        parts.append(Outcome(SUPPORTED if ok else NOT_SUPPORTED, ev, why))
    return combine(parts)


# ----------------------------------------------------------------------------------------------------------
# groups: all, cell types, neighbourhood sizes
# ----------------------------------------------------------------------------------------------------------
_SIZE = re.compile(r"(@[\d.]+%$)|(^cells=\d+$)")


def group_kind(group: str) -> str:
    """``all``, ``cell_type`` (a type name), ``size`` (``kbet@5%``, ``cells=N``) or ``cell_type+size``."""
    if group == "all":
        return "all"
    if "|" in group:
        return "cell_type+size"
    return "size" if _SIZE.search(group) else "cell_type"


def select_groups(groups: Iterable[str], per: Sequence[str] | None, types: Sequence[str] | None = None) -> list[str]:
    """The groups a claim must hold in: ``['all']`` without ``per``; with ``types`` only those cell types."""
    want = "all" if not per else "+".join(sorted(per, key=["cell_type", "size"].index))
    out = [g for g in dict.fromkeys(groups) if group_kind(g) == want]
    if types and "cell_type" in want:
        keep = set(map(str, types))
        out = [g for g in out if g.split("|")[0] in keep]
    return out


# ----------------------------------------------------------------------------------------------------------
# judging one claim for one method
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Context:
    """What the claims are judged on.

    tidy
        Tidy rows (``application, method, metric, group, value, n, note``) of every source, for the
        applications judged (metrics tables plus the derived spatial and scaling rows).
    repeats
        Per-repeat rows (the same plus ``repeat``).
    app_methods
        Application → methods run on it (for scaling rows: the scaling methods, under ``<app>@scaling``).
    known_methods
        Every method of the config (``methods:``).
    applications
        Paper application → (application judged here, analog: bool), for those this config can judge.
    unavailable
        Paper application → why it cannot be judged here.
    judge
        The methods every claim is judged for; each is left out of the others' field.
    alpha
        Significance level of the tests.
    """

    tidy: pd.DataFrame
    repeats: pd.DataFrame
    app_methods: Mapping[str, Sequence[str]]
    known_methods: Sequence[str]
    applications: Mapping[str, tuple[str, bool]]
    unavailable: Mapping[str, str] = field(default_factory=dict)
    judge: Sequence[str] = ("davae_released", "davae")
    alpha: float = 0.05
    scaling_reason: str = ""


def _field(tidy: pd.DataFrame, app: str, metric: str, group: str, lower: bool) -> Field:
    sub = tidy[(tidy["application"] == app) & (tidy["metric"] == metric) & (tidy["group"] == group)]
    sub = sub.drop_duplicates("method", keep="last")
    return Field(dict(zip(sub["method"], sub["value"].astype(float))), dict(zip(sub["method"], sub["note"])), lower)


def _repeats(reps: pd.DataFrame, app: str, metric: str, group: str) -> dict[str, dict[int, float]]:
    sub = reps[(reps["application"] == app) & (reps["metric"] == metric) & (reps["group"] == group)]
    return {m: dict(zip(s["repeat"].astype(int), s["value"].astype(float))) for m, s in sub.groupby("method")}


def _metric_present(tidy: pd.DataFrame, app: str, spec: str | Sequence[str]) -> str | None:
    names = [spec] if isinstance(spec, str) else list(spec)
    have = set(tidy.loc[tidy["application"] == app, "metric"])
    return next((n for n in names if n in have), None)


def judge_one(claim: Mapping[str, Any], subject: str, ctx: Context) -> tuple[str, Outcome]:
    """Verdict of one claim for one judged method: (application shown, outcome)."""
    paper_app = claim["application"]
    if claim["compare"] == "not_testable":
        shown = ctx.applications.get(paper_app, (paper_app, False))
        return _shown(*shown), Outcome(NOT_TESTABLE, "", claim.get("reason", "the paper's claim is qualitative"))
    if paper_app not in ctx.applications:
        return paper_app, Outcome(NOT_TESTABLE, "", ctx.unavailable.get(paper_app, f"{paper_app} is not an application of this config"))
    app, analog = ctx.applications[paper_app]
    shown = _shown(app, analog)
    source = claim.get("source", "metrics")
    table_app = f"{app}@scaling" if source in ("scaling", "scaling_growth") else app
    if source in ("scaling", "scaling_growth") and table_app not in ctx.app_methods:
        return shown, Outcome(NOT_TESTABLE, "", ctx.scaling_reason or "the scaling benchmark (Fig 6f) did not run in this config")
    methods = list(ctx.app_methods.get(table_app, []))
    where = "scaling.methods" if source.startswith("scaling") else f"applications.{app}.methods"
    if subject not in methods:
        return shown, Outcome(NOT_TESTABLE, "", f"{subject} was not run here ({where})")
    others = [m for m in methods if m != subject and m not in ctx.judge]
    unknown = {}
    for m in [*claim.get("against", []), *claim.get("with", [])]:
        if m not in ctx.known_methods:
            unknown[m] = f"{m} is not a method of this study"
        elif m not in methods:
            unknown[m] = f"{m} was not run here ({where})"
    if claim.get("with") and any(m in unknown for m in claim["with"]):
        return shown, Outcome(NOT_TESTABLE, "", "; ".join(unknown[m] for m in claim["with"] if m in unknown))
    parts = []
    for spec in claim["metrics"]:
        metric = _metric_present(ctx.tidy, table_app, spec)
        label = spec if isinstance(spec, str) else " or ".join(spec)
        if metric is None:
            parts.append(Outcome(NOT_TESTABLE, "", f"metric {label} not in the {source} table of {app}"))
            continue
        lower = claim.get("direction", "lower" if metric in LOWER_IS_BETTER else "higher") == "lower"
        groups_all = ctx.tidy.loc[(ctx.tidy["application"] == table_app) & (ctx.tidy["metric"] == metric), "group"]
        groups = select_groups(groups_all.astype(str), claim.get("per"), None if analog else claim.get("types"))
        sub_parts = []
        if not groups:
            sub_parts.append(Outcome(NOT_TESTABLE, "", f"{metric} has no {'/'.join(claim.get('per') or ['all'])} rows"))
        if claim.get("types") and not analog:
            have = {g.split("|")[0] for g in groups}
            sub_parts += [Outcome(NOT_TESTABLE, "", f"cell type {t!r} not in the {metric} rows")
                          for t in claim["types"] if t not in have]
        skipped = []
        for g in groups:
            f = _field(ctx.tidy, table_app, metric, g, lower)
            if not any(not math.isnan(f.values.get(m, np.nan)) for m in [subject, *others]):
                skipped.append(g)
                continue
            o = _compare(claim, f, subject, others, unknown, ctx, table_app, metric, g)
            o.group = g
            o.evidence = o.evidence if g == "all" else f"{g}: {o.evidence}"
            sub_parts.append(o)
        if skipped and len(skipped) == len(groups):
            f = _field(ctx.tidy, table_app, metric, skipped[0], lower)
            note = _short(f.notes.get(subject, "") or next((n for n in f.notes.values() if n), ""))
            where = "" if skipped == ["all"] else f" in {', '.join(skipped)}"
            sub_parts.append(Outcome(NOT_TESTABLE, "", f"no method has a {metric} value{where}" + (f" ({note})" if note else "")))
        out = _summarise_groups(sub_parts, groups, skipped)
        out.evidence = f"{metric}: {out.evidence}" if out.evidence else ""
        if len(claim["metrics"]) > 1 and out.reason and out.verdict == NOT_SUPPORTED:
            out.reason = f"{metric}: {out.reason}"
        parts.append(out)
    return shown, combine(parts)


def _shown(app: str, analog: bool) -> str:
    return f"{app} (analog on embedded data)" if analog else app


def _compare(claim, f: Field, subject, others, unknown, ctx: Context, app, metric, group) -> Outcome:
    kind, tol = claim["compare"], float(claim.get("tolerance", 0.0))
    if kind == "best":
        return compare_best(f, subject, others, tol)
    if kind == "top_k":
        return compare_top_k(f, subject, others, claim.get("with", []), int(claim.get("k", 2)), tol)
    reps = _repeats(ctx.repeats, app, metric, group) if claim.get("test") else None
    return compare_better(f, subject, claim.get("against", []), tol=tol, threshold=claim.get("threshold"),
                          test=claim.get("test"), alpha=ctx.alpha, repeats=reps, unknown=unknown,
                          not_worse=kind == "not_worse_than")


def _summarise_groups(parts: list[Outcome], groups: Sequence[str], skipped: Sequence[str]) -> Outcome:
    """One outcome over the groups: all holds → supported with every group's evidence (one group: as is);
    otherwise the failing groups' evidence and how many held."""
    out = combine(parts)
    judged = [g for g in groups if g not in skipped]
    if len(judged) > 1:
        held = sum(p.verdict == SUPPORTED for p in parts)
        failing = [p for p in parts if p.verdict != SUPPORTED]
        shown = failing if failing else parts
        out.evidence = f"holds in {held} of {len(judged)} groups; " + " | ".join(p.evidence for p in shown[:4] if p.evidence)
        if len(shown) > 4:
            out.evidence += f" | … {len(shown) - 4} more"
        if failing:
            tied = [p.group for p in failing if "(tied" in p.reason]
            out.reason = f"does not hold in {len(failing)} of {len(judged)}: {', '.join(p.group for p in failing)}" + (
                f" (ties in {', '.join(tied)})" if tied else "")
        else:  # every group held: keep what was left out (failed methods), once
            out.reason = "; ".join(dict.fromkeys(p.reason for p in parts if p.reason))
    if skipped and len(skipped) < len(groups):
        out.reason = "; ".join(filter(None, [out.reason, f"skipped (no method has a value): {', '.join(skipped)}"]))
    return out


def judge_claims(claims: Sequence[Mapping[str, Any]], ctx: Context) -> pd.DataFrame:
    """Every claim × every judged method → the ``verdicts.tsv`` rows (:data:`VERDICT_COLUMNS`)."""
    rows = []
    for claim in claims:
        for subject in ctx.judge:
            shown, o = judge_one(claim, subject, ctx)
            reason = o.reason
            if claim.get("proxy") and o.verdict != NOT_TESTABLE:
                reason = "; ".join(filter(None, [f"proxy: {claim['proxy']}", reason]))
            rows.append({"claim_id": claim["id"], "figure": claim["figure"], "claim": " ".join(claim["claim"].split()),
                         "application": shown, "method": subject, "evidence": o.evidence, "verdict": o.verdict,
                         "reason": reason})
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


# ----------------------------------------------------------------------------------------------------------
# derived tables: spatial coherence of joint clusters, scaling benchmark
# ----------------------------------------------------------------------------------------------------------
def spatial_rows(clusters: pd.DataFrame, application: str, method: str) -> list[dict]:
    """``cluster_morans_i`` and ``cluster_slice_mixing`` rows of one method's ``spatial/<method>.clusters.tsv``
    (:func:`davae_study.spatial.cluster_morans_i`, :func:`davae_study.spatial.cluster_slice_mixing`)."""
    from .spatial import cluster_morans_i, cluster_slice_mixing

    def row(metric, value, n, note):
        return {"application": application, "method": method, "metric": metric, "group": "all",
                "value": float(value), "n": int(n), "note": note}

    if clusters.empty:
        note = "method failed: no clusters (header-only clusters table)"
        return [row("cluster_morans_i", np.nan, 0, note), row("cluster_slice_mixing", np.nan, 0, note)]
    i, note_i = cluster_morans_i(clusters)
    s, note_s = cluster_slice_mixing(clusters)
    return [row("cluster_morans_i", i, len(clusters), note_i), row("cluster_slice_mixing", s, len(clusters), note_s)]


def scaling_rows(bench: pd.DataFrame, growth: pd.DataFrame | None, application: str) -> list[dict]:
    """Tidy rows of the scaling benchmark: ``runtime_s`` and ``peak_rss_mb`` per ``cells=N`` (mean over
    repeats; the method's own ``method_wall_s`` / ``method_peak_rss_mb`` where recorded, else the job's ``s`` /
    ``max_rss``; NaN for a failed run) and ``runtime_exponent`` (``growth.tsv``: the exponent of
    ``method_wall_s`` where recorded, else of ``s``)."""
    rows = []
    for (method, n_cells), sub in bench.groupby(["method", "n_cells"], sort=True):
        failed = "method_status" in sub and (sub["method_status"].astype(str) == "failed").any()
        for metric, own, job in (("runtime_s", "method_wall_s", "s"), ("peak_rss_mb", "method_peak_rss_mb", "max_rss")):
            col = own if own in sub and pd.to_numeric(sub[own], errors="coerce").notna().all() else job
            value = np.nan if failed else float(pd.to_numeric(sub[col], errors="coerce").mean())
            rows.append({"application": application, "method": method, "metric": metric,
                         "group": f"cells={int(n_cells)}", "value": value, "n": int(n_cells),
                         "note": "method failed: scaling run failed" if failed else f"{col}, mean of {len(sub)} repeats"})
    if growth is not None:
        for method, sub in growth.groupby("method", sort=True):
            # the method's own time where recorded (as runtime_s), else the job's
            own = sub[sub["quantity"] == "method_wall_s"]
            pick = own if len(own) and own["exponent"].notna().all() else sub[sub["quantity"] == "s"]
            for r in pick.itertuples():
                rows.append({"application": application, "method": method, "metric": "runtime_exponent",
                             "group": "all", "value": float(r.exponent), "n": int(r.n_sizes),
                             "note": f"{r.quantity} ∝ cells^b over {r.n_sizes} sizes"})
    return rows


# ----------------------------------------------------------------------------------------------------------
# files → verdicts.tsv
# ----------------------------------------------------------------------------------------------------------
def read_tidy(path: str | Path) -> pd.DataFrame:
    """A tidy table with names kept as text (a cell type called ``NA`` stays a name) and numeric values."""
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if "value" in df:
        df["value"] = pd.to_numeric(df["value"].replace("", np.nan), errors="coerce")
    if "repeat" in df:
        df["repeat"] = pd.to_numeric(df["repeat"], errors="coerce")
    return df


def application_map(settings: Mapping[str, Any], applications: Iterable[str],
                    claims: Sequence[Mapping[str, Any]]) -> tuple[dict[str, tuple[str, bool]], dict[str, str]]:
    """Paper application → (application here, analog?) and → why not testable, from ``verdicts.analogs``
    (paper application → demo application) and the config's applications."""
    apps = set(applications)
    analogs = dict(settings.get("analogs") or {})
    reasons = dict(settings.get("unavailable") or {})
    mapping, unavailable = {}, {}
    for paper_app in dict.fromkeys(c["application"] for c in claims):
        if paper_app in analogs and analogs[paper_app] in apps:
            mapping[paper_app] = (analogs[paper_app], True)
        elif paper_app in apps:
            mapping[paper_app] = (paper_app, False)
        elif paper_app in analogs and paper_app not in reasons:  # a config trimmed of the analog (or a typo)
            unavailable[paper_app] = f"its analog {analogs[paper_app]} is not an application of this config"
        else:
            unavailable[paper_app] = reasons.get(
                paper_app, f"application {paper_app} is not in this config (its data are not downloaded here)")
    return mapping, unavailable


def write_verdicts(
    out_tsv: str | Path,
    *,
    claims: str | Path | Sequence[Mapping[str, Any]],
    metrics: Mapping[str, str],
    repeats: Mapping[str, Sequence[str]] | None = None,
    clusters: Mapping[str, Mapping[str, str]] | None = None,
    scaling: Mapping[str, str] | None = None,
    app_methods: Mapping[str, Sequence[str]],
    known_methods: Sequence[str],
    settings: Mapping[str, Any] | None = None,
    scaling_methods: Sequence[str] = (),
    scaling_source: str | None = None,
) -> pd.DataFrame:
    """Judge every claim from the study's tables and write ``verdicts.tsv`` (rule ``verdicts``).

    Parameters
    ----------
    claims
        The claims table (path or parsed list; :func:`load_claims`).
    metrics
        Application → ``results/<app>/metrics.tsv``.
    repeats
        Application → its methods' ``metrics/<method>.repeats.tsv`` (for the tests).
    clusters
        Application → method → ``spatial/<method>.clusters.tsv`` (spatial applications).
    scaling
        ``{"benchmark": results/scaling/benchmark.tsv, "growth": results/scaling/growth.tsv}`` when the
        scaling benchmark runs in this config; ``scaling_source`` its application, ``scaling_methods`` its methods.
    app_methods, known_methods
        Methods per application and every method of the config.
    settings
        The config's ``verdicts:`` section: ``judge``, ``analogs``, ``unavailable``, ``alpha``.
    """
    settings = dict(settings or {})
    claim_list = load_claims(claims)
    tidy = [read_tidy(p) for p in metrics.values()]
    reps = [read_tidy(p) for paths in (repeats or {}).values() for p in paths]
    extra: list[dict] = []
    for app, per_method in (clusters or {}).items():
        for method, path in per_method.items():
            table = pd.read_csv(path, sep="\t", dtype={"cell": str, "batch": str, "cluster": str})
            extra += spatial_rows(table, app, method)
    methods = {a: list(ms) for a, ms in app_methods.items()}
    scaling_reason = settings.get("scaling_reason", "")
    if scaling and scaling_source:
        bench = pd.read_csv(scaling["benchmark"], sep="\t")
        growth = pd.read_csv(scaling["growth"], sep="\t") if scaling.get("growth") else None
        extra += scaling_rows(bench, growth, f"{scaling_source}@scaling")
        methods[f"{scaling_source}@scaling"] = list(scaling_methods)
    elif not scaling_reason:
        scaling_reason = "Fig 6f not run: this config has no scaling: section (snakemake scaling, docs/scaling.md)"
    frames = [t for t in tidy if len(t)] + ([pd.DataFrame(extra)] if extra else [])
    tidy_all = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=_TIDY)
    tidy_all["note"] = tidy_all["note"].fillna("").astype(str)
    reps_all = pd.concat(reps, ignore_index=True) if reps else pd.DataFrame(columns=[*_TIDY, "repeat"])
    mapping, unavailable = application_map(settings, list(metrics), claim_list)
    ctx = Context(tidy=tidy_all, repeats=reps_all, app_methods=methods, known_methods=list(known_methods),
                  applications=mapping, unavailable=unavailable,
                  judge=list(settings.get("judge", ["davae_released", "davae"])),
                  alpha=float(settings.get("alpha", 0.05)), scaling_reason=scaling_reason)
    table = judge_claims(claim_list, ctx)
    write_tsv(table, out_tsv)
    return table


# ----------------------------------------------------------------------------------------------------------
# markdown for the README
# ----------------------------------------------------------------------------------------------------------
def markdown_table(table: pd.DataFrame, max_evidence: int = 200) -> str:
    """``verdicts.tsv`` as a markdown table: one row per claim, one verdict column per judged method, and the
    evidence / reason of the last judged method (the study's DAVAE) shortened to ``max_evidence`` characters.
    A claim judged on a proxy is marked "(proxy)"; the proxy itself is in verdicts.tsv and docs/verdicts.md."""
    methods = list(dict.fromkeys(table["method"]))
    lines = ["| figure | claim | application | " + " | ".join(methods) + " | evidence / reason (" + methods[-1] + ") |",
             "|---|---|---|" + "---|" * len(methods) + "---|"]
    for cid, sub in table.groupby("claim_id", sort=False):
        first = sub.iloc[0]
        by = sub.set_index("method")
        last = by.loc[methods[-1]]
        ev = str(last["evidence"] or "")
        reasons = [r for r in str(last["reason"] or "").split("; ") if r]
        proxy = any(r.startswith("proxy: ") for r in reasons)
        reason = "; ".join(r for r in reasons if not r.startswith("proxy: "))
        if last["verdict"] != SUPPORTED and reason:
            ev = f"{ev} — {reason}" if ev else reason
        if len(ev) > max_evidence:
            ev = ev[: max_evidence - 1] + "…"
        cells = [str(by.loc[m, "verdict"]) if m in by.index else "" for m in methods]
        text = f"{first['claim']} (proxy)" if proxy else str(first["claim"])
        esc = [c.replace("|", "\\|") for c in (first["figure"], text, first["application"], *cells, ev)]
        lines.append("| " + " | ".join(esc) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m davae_study.verdicts",
                                 description="Print results/verdicts.tsv as a markdown table (README).")
    ap.add_argument("tsv", nargs="?", default="results/verdicts.tsv")
    ap.add_argument("--max-evidence", type=int, default=200, help="characters of evidence per row")
    args = ap.parse_args(argv)
    if not Path(args.tsv).is_file():
        ap.error(f"{args.tsv} not found; run the workflow first (make demo)")
    table = pd.read_csv(args.tsv, sep="\t", dtype=str, keep_default_na=False)
    print(markdown_table(table, args.max_evidence))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
