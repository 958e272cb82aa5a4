# Reproduction verdicts: every claim of config/claims.yaml (config `verdicts:`) judged against the measured
# tables (metrics, per-repeat values, spatial clusters, the scaling benchmark) -> results/verdicts.tsv.
# Library: workflow/davae_study/verdicts.py (write_verdicts); docs: docs/verdicts.md.
rule verdicts:
    input:
        verdict_inputs,
    output:
        report("results/verdicts.tsv", caption="../report/verdicts.rst", category="Verdicts"),
    log:
        "logs/verdicts.log",
    params:
        files=verdict_files(),
        claims=VERDICT_CLAIMS_FILE,
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
