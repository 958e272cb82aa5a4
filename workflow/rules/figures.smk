# Figures re-render from cached tables (metrics, UMAP coordinates, obs) only: `snakemake figures` never
# recomputes an integration.

FIGURES = ["umap_grid", "ari", "kbet"]


rule figure_umap_grid:
    input:
        umaps=per_method("results/{app}/umap/{method}.tsv"),
        obs="results/{app}/obs.tsv",
    output:
        png=report(
            "results/{app}/figures/umap_grid.png",
            caption="../report/umap_grid.rst",
            category="{app}",
            subcategory="Figures",
        ),
        pdf="results/{app}/figures/umap_grid.pdf",
    log:
        "logs/{app}/figures/umap_grid.log",
    params:
        methods=lambda wc: app_methods(wc.app),
        title=lambda wc: config["applications"][wc.app].get("title", wc.app),
    conda:
        "../../envs/study.yaml"
    script:
        "../scripts/figure_umap_grid.py"


rule figure_ari:
    input:
        "results/{app}/metrics.tsv",
    output:
        png=report(
            "results/{app}/figures/ari.png",
            caption="../report/ari.rst",
            category="{app}",
            subcategory="Figures",
        ),
        pdf="results/{app}/figures/ari.pdf",
    log:
        "logs/{app}/figures/ari.log",
    params:
        title=lambda wc: config["applications"][wc.app].get("title", wc.app),
    conda:
        "../../envs/study.yaml"
    script:
        "../scripts/figure_ari.py"


rule figure_kbet:
    input:
        metrics="results/{app}/metrics.tsv",
        repeats=per_method("results/{app}/metrics/{method}.repeats.tsv"),
    output:
        png=report(
            "results/{app}/figures/kbet.png",
            caption="../report/kbet.rst",
            category="{app}",
            subcategory="Figures",
        ),
        pdf="results/{app}/figures/kbet.pdf",
    log:
        "logs/{app}/figures/kbet.log",
    params:
        title=lambda wc: config["applications"][wc.app].get("title", wc.app),
    conda:
        "../../envs/study.yaml"
    script:
        "../scripts/figure_kbet.py"


rule figure_summary:
    input:
        "results/summary.tsv",
    output:
        png=report("results/figures/summary.png", caption="../report/summary_figure.rst", category="Summary"),
        pdf="results/figures/summary.pdf",
    log:
        "logs/figures/summary.log",
    conda:
        "../../envs/study.yaml"
    script:
        "../scripts/figure_summary.py"


rule figures:
    input:
        [app_figures(app) for app in APPS],
        "results/figures/summary.png",


localrules:
    figures,
