# Label transfer (applications with a reference), spatial clustering, and the simulated-spots ground truth.
# integrated/<method>.h5ad → transfer/<method>.tsv + transfer/<method>.metrics.tsv (tidy, CONTRACTS format)
#                          → spatial/<method>.clusters.tsv (applications with transfer.spatial)
# Config: the global `transfer:` block and applications.<app>.transfer (see docs/transfer.md).
rule simulate_spots:
    input:
        lambda wc: config["transfer"]["simulate_spots"][wc.name]["source"],
    output:
        h5ad="results/simulated/{name}.h5ad",
        truth="results/simulated/{name}.truth.tsv",
    log:
        "logs/simulated/{name}.log",
    params:
        simulate=lambda wc: simulate_config(config, wc.name),
    wildcard_constraints:
        name="|".join((config.get("transfer") or {}).get("simulate_spots") or {"__none__": 0}),
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/transfer_simulate_spots.py"


rule transfer:
    input:
        prepared="results/{app}/prepared.h5ad",
        integrated="results/{app}/integrated/{method}.h5ad",
        truth=transfer_truth,
    output:
        table="results/{app}/transfer/{method}.tsv",
        metrics="results/{app}/transfer/{method}.metrics.tsv",
    log:
        "logs/{app}/transfer/{method}.log",
    benchmark:
        "benchmarks/{app}/transfer/{method}.tsv"
    params:
        transfer=lambda wc: transfer_config(config, wc.app),
        seed=config.get("seed", 0),
        device=config.get("device", "auto"),
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/transfer.py"


rule spatial_clusters:
    input:
        prepared="results/{app}/prepared.h5ad",
        integrated="results/{app}/integrated/{method}.h5ad",
        truth=transfer_truth,
    output:
        "results/{app}/spatial/{method}.clusters.tsv",
    log:
        "logs/{app}/spatial/{method}.log",
    benchmark:
        "benchmarks/{app}/spatial/{method}.tsv"
    params:
        spatial=lambda wc: spatial_config(config, wc.app),
        seed=config.get("seed", 0),
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/transfer_spatial.py"
