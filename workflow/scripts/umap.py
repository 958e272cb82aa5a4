"""rule umap → davae_study.pipeline.umap"""
from davae_study.pipeline import logged, umap

with logged(snakemake.log[0]):
    umap(snakemake.input[0], snakemake.output[0], seed=snakemake.params.seed, **snakemake.params.umap)
