# Label transfer (applications with a reference), spatial clustering, and the simulated-spots ground truth.
# integrated/<method>.h5ad → transfer/<method>.tsv + transfer/<method>.metrics.tsv (tidy, CONTRACTS format)
#                          → spatial/<method>.clusters.tsv (applications with transfer.spatial)
# Config: the global `transfer:` block and applications.<app>.transfer (see docs/transfer.md).
from davae_study.groundtruth import simulate_config, spatial_config, transfer_config  # noqa: E402


def transfer_apps():
    """Applications with a reference to transfer labels from."""
    return [a for a in APPS if "reference" in (config["applications"][a].get("transfer") or {})]


def spatial_apps():
    """Applications whose joint embedding is clustered for spatial maps."""
    return [a for a in APPS if (config["applications"][a].get("transfer") or {}).get("spatial")]


def transfer_truth(wildcards):
    """The application's ground-truth table (cell, cell_type, x, y, proportion:<type>…), if any."""
    path = (config["applications"][wildcards.app].get("transfer") or {}).get("truth")
    return [path] if path else []


def transfer_outputs():
    """Every transfer and spatial output of the configured applications (for rule all)."""
    out = []
    for app in transfer_apps():
        out += expand("results/{app}/transfer/{method}.{ext}", app=app, method=app_methods(app), ext=["tsv", "metrics.tsv"])
    for app in spatial_apps():
        out += expand("results/{app}/spatial/{method}.clusters.tsv", app=app, method=app_methods(app))
    return out


def transfer_metrics(wildcards):
    """Transfer metric tables of one application (empty when it has no reference), for aggregate_metrics."""
    if wildcards.app not in transfer_apps():
        return []
    return expand("results/{app}/transfer/{method}.metrics.tsv", app=wildcards.app, method=app_methods(wildcards.app))


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
        "../../envs/study.yaml"
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
        "../../envs/study.yaml"
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
        "../../envs/study.yaml"
    script:
        "../scripts/transfer_spatial.py"
