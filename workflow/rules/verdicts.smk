# Reproduction verdicts: every claim of config/claims.yaml (config `verdicts:`) judged against the measured
# tables (metrics, per-repeat values, spatial clusters, the scaling benchmark) -> results/verdicts.tsv.
# Library: workflow/davae_study/verdicts.py (write_verdicts); docs: docs/verdicts.md.
from davae_study.verdicts import ClaimsError, application_map, load_claims  # noqa: E402

VERDICTS = config.get("verdicts") or {}


def _verdict_plan():
    """The claims and which applications of this config they are judged on (paper application -> here)."""
    if not VERDICTS:
        return [], {}
    try:
        claims = load_claims(VERDICTS.get("claims", "config/claims.yaml"))
    except ClaimsError as err:
        raise WorkflowError(str(err)) from None
    mapping, _ = application_map(VERDICTS, APPS, claims)
    return claims, mapping


VERDICT_CLAIMS, VERDICT_APPS = _verdict_plan()
# the applications judged here, each once (an analog may stand for one paper application)
JUDGED_APPS = list(dict.fromkeys(app for app, _ in VERDICT_APPS.values()))
# applications whose clusters tables are read (claims with source: spatial)
SPATIAL_JUDGED = [VERDICT_APPS[c["application"]][0] for c in VERDICT_CLAIMS
                  if c.get("source") == "spatial" and c["application"] in VERDICT_APPS]


def verdict_files():
    """The tables rule verdicts reads, by role (also its params, so input and mapping never disagree)."""
    files = {
        "metrics": {app: f"results/{app}/metrics.tsv" for app in JUDGED_APPS},
        "repeats": {app: expand("results/{app}/metrics/{method}.repeats.tsv", app=app, method=app_methods(app))
                    for app in JUDGED_APPS},
        "clusters": {app: {m: f"results/{app}/spatial/{m}.clusters.tsv" for m in app_methods(app)}
                     for app in dict.fromkeys(SPATIAL_JUDGED) if app in spatial_apps()},
        "scaling": {},
    }
    if SCALING and SCALING.get("source") in JUDGED_APPS:
        files["scaling"] = {"benchmark": "results/scaling/benchmark.tsv", "growth": "results/scaling/growth.tsv"}
    return files


def verdict_inputs(wildcards):
    f = verdict_files()
    return (list(f["metrics"].values()) + [p for ps in f["repeats"].values() for p in ps]
            + [p for ms in f["clusters"].values() for p in ms.values()] + list(f["scaling"].values()))


def verdict_outputs():
    return ["results/verdicts.tsv"] if VERDICTS else []


rule verdicts:
    input:
        verdict_inputs,
    output:
        report("results/verdicts.tsv", caption="../report/verdicts.rst", category="Verdicts"),
    log:
        "logs/verdicts.log",
    params:
        files=verdict_files(),
        claims=VERDICTS.get("claims", "config/claims.yaml"),
        settings={k: v for k, v in VERDICTS.items() if k != "claims"},
        app_methods={app: app_methods(app) for app in APPS},
        known_methods=list(config["methods"]),
        scaling_source=SCALING.get("source"),
        scaling_methods=SCALING_METHODS,
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/verdicts.py"


localrules:
    verdicts,
