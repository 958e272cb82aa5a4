# prepare → integrate (one job per method) → umap / evaluate → metrics tables.


rule prepare:
    input:
        unpack(app_input_files),
    output:
        h5ad="results/{app}/prepared.h5ad",
        obs="results/{app}/obs.tsv",
        provenance=report(
            "results/{app}/provenance.tsv",
            caption="../report/provenance.rst",
            category="{app}",
            subcategory="Tables",
        ),
    log:
        "logs/{app}/prepare.log",
    benchmark:
        "benchmarks/{app}/prepare.tsv"
    params:
        input_spec=lambda wc: config["applications"][wc.app]["input"],
        prepare=lambda wc: config["applications"][wc.app].get("prepare", {}),
        sources=DATA["sources"],
        lock=DATA["lock"],
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../../envs/prepare.yaml"
    script:
        "../scripts/prepare.py"


rule integrate:
    input:
        "results/{app}/prepared.h5ad",
    output:
        "results/{app}/integrated/{method}.h5ad",
    log:
        "logs/{app}/integrate/{method}.log",
    benchmark:
        repeat("benchmarks/{app}/integrate/{method}.tsv", config.get("benchmark_repeats", 1))
    params:
        module=lambda wc: method_entry(wc).get("module"),
        params=method_params,
        seed=config.get("seed", 0),
        device=config.get("device", "auto"),
        on_error=config.get("on_method_error", "record"),
    threads: method_threads
    resources:
        mem_mb=method_resource("mem_mb", 8000),
        runtime=method_resource("runtime", 120),
        gpu=method_resource("gpu", 0),
        **method_partition(),
    conda:
        methods_env
    script:
        "../scripts/integrate.py"


rule umap:
    input:
        "results/{app}/integrated/{method}.h5ad",
    output:
        "results/{app}/umap/{method}.tsv",
    log:
        "logs/{app}/umap/{method}.log",
    benchmark:
        "benchmarks/{app}/umap/{method}.tsv"
    params:
        umap=config.get("umap", {}),
        seed=config.get("seed", 0),
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/umap.py"


rule evaluate:
    input:
        "results/{app}/integrated/{method}.h5ad",
    output:
        tidy="results/{app}/metrics/{method}.tsv",
        repeats="results/{app}/metrics/{method}.repeats.tsv",
    log:
        "logs/{app}/evaluate/{method}.log",
    benchmark:
        "benchmarks/{app}/evaluate/{method}.tsv"
    params:
        metrics={"seed": config.get("seed", 0), **config.get("metrics", {})},
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/evaluate.py"


rule aggregate_metrics:
    input:
        per_method("results/{app}/metrics/{method}.tsv"),
        lambda wc: transfer_metrics(wc),
    output:
        report(
            "results/{app}/metrics.tsv",
            caption="../report/metrics.rst",
            category="{app}",
            subcategory="Tables",
        ),
    log:
        "logs/{app}/aggregate_metrics.log",
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/aggregate.py"


rule summary:
    input:
        expand("results/{app}/metrics.tsv", app=APPS),
    output:
        report("results/summary.tsv", caption="../report/summary.rst", category="Summary"),
    log:
        "logs/summary.log",
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/summary.py"


localrules:
    aggregate_metrics,
    summary,
