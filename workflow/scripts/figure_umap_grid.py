"""rule figure_umap_grid → davae_study.pipeline.figure_umap_grid"""
from davae_study.pipeline import figure_umap_grid, logged

with logged(snakemake.log[0]):
    figure_umap_grid(
        dict(zip(snakemake.params.methods, snakemake.input.umaps)),
        snakemake.input.obs,
        snakemake.output.png,
        title=snakemake.params.title,
    )
