# Runtime-scaling benchmark (Fig 6f): cells drawn from a prepared data set at the sizes of config `scaling:`,
# each method of `scaling.methods` run once per size (through the same method registry as rule integrate)
# under a `benchmark:` directive, then one table, growth exponents and the time/memory-vs-cells figure.
#   snakemake scaling --cores all [--profile profiles/slurm]
# Library: workflow/davae_study/scaling.py; docs: docs/scaling.md.

rule scaling:
    input:
        scaling_outputs(),


rule scaling_subsample:
    input:
        scaling_source,
    output:
        "results/scaling/{n_cells}/prepared.h5ad",
    log:
        "logs/scaling/{n_cells}/subsample.log",
    params:
        mode=SCALING.get("mode", "downsample"),
        seed=SCALING.get("seed", config.get("seed", 0)),
        depth_sd=SCALING.get("depth_sd", 0.2),
    resources:
        mem_mb=lambda wc, attempt: max(4000, int(SCALING_PER_1K.get("mem_mb", 20) * int(wc.n_cells) / 1000)) * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    conda:
        "../../envs/prepare.yaml"
    script:
        "../scripts/scaling_subsample.py"


rule scaling_integrate:
    input:
        "results/scaling/{n_cells}/prepared.h5ad",
    output:
        "results/scaling/{n_cells}/integrated/{method}.h5ad",
    log:
        "logs/scaling/{n_cells}/{method}.log",
    benchmark:
        repeat("benchmarks/scaling/{method}/{n_cells}.tsv", int(SCALING.get("repeats", 1)))
    params:
        module=lambda wc: config["methods"][wc.method].get("module"),
        params=lambda wc: {**config["methods"][wc.method].get("params", {}),
                           **SCALING.get("params", {}).get(wc.method, {})},
        seed=config.get("seed", 0),
        device=config.get("device", "auto"),
    threads: lambda wc: config["methods"][wc.method].get("threads", 2)
    resources:
        mem_mb=scaling_resource("mem_mb", 8000),
        runtime=scaling_resource("runtime", 120),
        gpu=scaling_resource("gpu", 0),
        **method_partition(),
    conda:
        methods_env
    script:
        "../scripts/scaling_integrate.py"


rule scaling_table:
    input:
        bench=expand("benchmarks/scaling/{method}/{n_cells}.tsv", method=SCALING_METHODS, n_cells=SCALING_SIZES),
        results=expand(
            "results/scaling/{n_cells}/integrated/{method}.h5ad", method=SCALING_METHODS, n_cells=SCALING_SIZES
        ),
    output:
        table="results/scaling/benchmark.tsv",
        growth="results/scaling/growth.tsv",
    log:
        "logs/scaling/table.log",
    params:
        methods=[m for m in SCALING_METHODS for _ in SCALING_SIZES],
        n_cells=[n for _ in SCALING_METHODS for n in SCALING_SIZES],
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/scaling_table.py"


rule scaling_figure:
    input:
        "results/scaling/benchmark.tsv",
    output:
        png="results/scaling/runtime.png",
        pdf="results/scaling/runtime.pdf",
    log:
        "logs/scaling/figure.log",
    params:
        title=SCALING.get("title", "Run time and memory vs cells"),
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/scaling_figure.py"


localrules:
    scaling,
    scaling_table,
    scaling_figure,
