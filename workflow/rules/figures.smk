# Figures re-render from cached tables (metrics, UMAP coordinates, obs) only: `snakemake figures` never
# recomputes an integration.
from davae_study.plotting.workflow import MARKER_FIGURES, marker_genes  # noqa: E402

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
        renderer="umap_grid",
        methods=lambda wc: app_methods(wc.app),
        kwargs=lambda wc: {"title": app_title(wc.app)},
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure.py"


rule figure_ari:
    input:
        metrics="results/{app}/metrics.tsv",
        repeats=per_method("results/{app}/metrics/{method}.repeats.tsv"),
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
        renderer="ari",
        kwargs=lambda wc: {"title": app_title(wc.app)},
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure.py"


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
        renderer="kbet",
        kwargs=lambda wc: {"title": app_title(wc.app)},
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure.py"


rule figure_summary:
    input:
        summary="results/summary.tsv",
    output:
        png=report("results/figures/summary.png", caption="../report/summary_figure.rst", category="Summary"),
        pdf="results/figures/summary.pdf",
    log:
        "logs/figures/summary.log",
    params:
        renderer="summary",
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure.py"


rule figures:
    input:
        [app_figures(app) for app in APPS],
        "results/figures/summary.png",


localrules:
    figures,


# ---- Figs 4-6: figures an application lists under applications.<app>.figures ----------------------------
# Options per figure (method whose embedding is drawn, genes, types, markers, select, clusters) come from
# applications.<app>.figure_params.<figure> (docs/figures.md). Every rule runs the script
# workflow/scripts/figure.py → davae_study.plotting.render.render_rule: params.renderer picks the figure,
# named inputs = its files.
rule figure_umap_transfer:
    input:
        umap=lambda wc: figure_file(config, wc.app, "umap_transfer", "results/{app}/umap/{method}.tsv"),
        obs="results/{app}/obs.tsv",
        transfer=lambda wc: figure_file(config, wc.app, "umap_transfer", "results/{app}/transfer/{method}.tsv"),
    output:
        png=report(
            "results/{app}/figures/umap_transfer.png",
            caption="../report/umap_transfer.rst",
            category="{app}",
            subcategory="Figures",
        ),
        pdf="results/{app}/figures/umap_transfer.pdf",
    log:
        "logs/{app}/figures/umap_transfer.log",
    params:
        renderer="umap_by",
        kwargs=lambda wc: figure_kwargs(
            config,
            wc.app,
            "umap_transfer",
            keys=["modality", "cell type (transferred)"],
            titles=["modality", "cell type (RNA: annotated, ATAC: transferred)"],
        ),
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure.py"


rule figure_gene_activity:
    input:
        umap=lambda wc: figure_file(config, wc.app, "gene_activity", "results/{app}/umap/{method}.tsv"),
        # every input gene (rule marker_expression): the ATAC cells' gene activity is a batch of the same
        # matrix as the RNA cells, normalised as prepared.h5ad's X, so a gene prepare did not select is drawn
        expression="results/{app}/markers.h5ad",
    output:
        png=report(
            "results/{app}/figures/gene_activity.png",
            caption="../report/gene_activity.rst",
            category="{app}",
            subcategory="Figures",
        ),
        pdf="results/{app}/figures/gene_activity.pdf",
    log:
        "logs/{app}/figures/gene_activity.log",
    params:
        renderer="feature_umaps",
        kwargs=lambda wc: figure_kwargs(
            config,
            wc.app,
            "gene_activity",
            **MARKER_FIGURES["gene_activity"],
            select={"modality": "ATAC"},
            value_label="gene activity",
        ),
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure.py"


rule figure_coverage:
    input:
        peaks=lambda wc: config["applications"][wc.app]["input"]["files"]["atac"],
        gtf=lambda wc: config["applications"][wc.app]["input"]["files"]["gtf"],
        transfer=lambda wc: figure_file(config, wc.app, "coverage", "results/{app}/transfer/{method}.tsv"),
    output:
        png=report(
            "results/{app}/figures/coverage.png",
            caption="../report/coverage.rst",
            category="{app}",
            subcategory="Figures",
        ),
        pdf="results/{app}/figures/coverage.pdf",
    log:
        "logs/{app}/figures/coverage.log",
    params:
        renderer="coverage",
        kwargs=lambda wc: figure_kwargs(
            config, wc.app, "coverage", genes=PAPER_GENE_ACTIVITY, flank=10000, min_cells=20
        ),
    resources:
        mem_mb=8000,
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure.py"


rule figure_umap_spatial:
    input:
        umap=lambda wc: figure_file(config, wc.app, "umap_spatial", "results/{app}/umap/{method}.tsv"),
        obs="results/{app}/obs.tsv",
        clusters=lambda wc: figure_clusters(config, wc.app, "umap_spatial"),
    output:
        png=report(
            "results/{app}/figures/umap_spatial.png",
            caption="../report/umap_spatial.rst",
            category="{app}",
            subcategory="Figures",
        ),
        pdf="results/{app}/figures/umap_spatial.pdf",
    log:
        "logs/{app}/figures/umap_spatial.log",
    params:
        renderer="umap_by",
        kwargs=lambda wc: figure_kwargs(
            config,
            wc.app,
            "umap_spatial",
            keys=["batch", "cluster"],
            titles=["slice", "cluster"],
            select={"role": "query"},
        ),
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure.py"


rule figure_spatial_clusters:
    input:
        clusters=lambda wc: figure_clusters(config, wc.app, "spatial_clusters"),
    output:
        png=report(
            "results/{app}/figures/spatial_clusters.png",
            caption="../report/spatial_clusters.rst",
            category="{app}",
            subcategory="Figures",
        ),
        pdf="results/{app}/figures/spatial_clusters.pdf",
    log:
        "logs/{app}/figures/spatial_clusters.log",
    params:
        renderer="spatial_clusters",
        kwargs=lambda wc: figure_kwargs(config, wc.app, "spatial_clusters"),
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure.py"


rule figure_spatial_probabilities:
    input:
        transfer=lambda wc: figure_file(config, wc.app, "spatial_probabilities", "results/{app}/transfer/{method}.tsv"),
        clusters=lambda wc: figure_clusters(config, wc.app, "spatial_probabilities"),
    output:
        png=report(
            "results/{app}/figures/spatial_probabilities.png",
            caption="../report/spatial_probabilities.rst",
            category="{app}",
            subcategory="Figures",
        ),
        pdf="results/{app}/figures/spatial_probabilities.pdf",
    log:
        "logs/{app}/figures/spatial_probabilities.log",
    params:
        renderer="spatial_probabilities",
        kwargs=lambda wc: figure_kwargs(config, wc.app, "spatial_probabilities", types=PAPER_SPATIAL_TYPES),
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure.py"


rule figure_umap_clusters:
    input:
        umap=lambda wc: figure_file(config, wc.app, "umap_clusters", "results/{app}/umap/{method}.tsv"),
        obs="results/{app}/obs.tsv",
        clusters=lambda wc: figure_clusters(config, wc.app, "umap_clusters"),
    output:
        png=report(
            "results/{app}/figures/umap_clusters.png",
            caption="../report/umap_clusters.rst",
            category="{app}",
            subcategory="Figures",
        ),
        pdf="results/{app}/figures/umap_clusters.pdf",
    log:
        "logs/{app}/figures/umap_clusters.log",
    params:
        renderer="umap_by",
        kwargs=lambda wc: figure_kwargs(config, wc.app, "umap_clusters", keys=["batch", "cluster"]),
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure.py"


# The genes of the marker figures and of the gene-activity figure (MARKER_FIGURES: all of them, not only the
# selected features of prepared.h5ad), normalised as prepared.h5ad's X. A rule of its own, not an output of
# prepare: editing a figure's genes re-runs this job only, never prepare and the integrations behind it.
rule marker_expression:
    input:
        unpack(app_input_files),
        obs="results/{app}/obs.tsv",
    output:
        h5ad="results/{app}/markers.h5ad",
    log:
        "logs/{app}/marker_expression.log",
    benchmark:
        "benchmarks/{app}/marker_expression.tsv"
    params:
        input_spec=lambda wc: config["applications"][wc.app]["input"],
        prepare=lambda wc: config["applications"][wc.app].get("prepare", {}),
        genes=lambda wc: marker_genes(config, wc.app),
    resources:
        # reads the input as prepare does (without prepare's output): prepare's memory, from the input size
        mem_mb=lambda wc, input, attempt: max(8000, int(12 * input.size_mb)) * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    conda:
        "../../envs/prepare.yaml"
    script:
        "../scripts/markers.py"


rule figure_marker_umaps:
    input:
        umap=lambda wc: figure_file(config, wc.app, "marker_umaps", "results/{app}/umap/{method}.tsv"),
        expression="results/{app}/markers.h5ad",
    output:
        png=report(
            "results/{app}/figures/marker_umaps.png",
            caption="../report/marker_umaps.rst",
            category="{app}",
            subcategory="Figures",
        ),
        pdf="results/{app}/figures/marker_umaps.pdf",
    log:
        "logs/{app}/figures/marker_umaps.log",
    params:
        renderer="feature_umaps",
        kwargs=lambda wc: figure_kwargs(config, wc.app, "marker_umaps", **MARKER_FIGURES["marker_umaps"]),
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure.py"


rule figure_marker_violins:
    input:
        expression="results/{app}/markers.h5ad",
        clusters=lambda wc: figure_clusters(config, wc.app, "marker_violins"),
    output:
        png=report(
            "results/{app}/figures/marker_violins.png",
            caption="../report/marker_violins.rst",
            category="{app}",
            subcategory="Figures",
        ),
        pdf="results/{app}/figures/marker_violins.pdf",
    log:
        "logs/{app}/figures/marker_violins.log",
    params:
        renderer="marker_violins",
        kwargs=lambda wc: figure_kwargs(config, wc.app, "marker_violins", **MARKER_FIGURES["marker_violins"]),
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure.py"


rule figure_marker_dotplot:
    input:
        expression="results/{app}/markers.h5ad",
        clusters=lambda wc: figure_clusters(config, wc.app, "marker_dotplot"),
    output:
        png=report(
            "results/{app}/figures/marker_dotplot.png",
            caption="../report/marker_dotplot.rst",
            category="{app}",
            subcategory="Figures",
        ),
        pdf="results/{app}/figures/marker_dotplot.pdf",
    log:
        "logs/{app}/figures/marker_dotplot.log",
    params:
        renderer="marker_dotplot",
        kwargs=lambda wc: figure_kwargs(config, wc.app, "marker_dotplot", **MARKER_FIGURES["marker_dotplot"]),
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure.py"
