"""rule marker_expression → davae_study.pipeline.marker_expression"""
from davae_study.pipeline import logged, marker_expression

with logged(snakemake.log[0]):
    marker_expression(
        dict(snakemake.input),
        snakemake.params.input_spec,
        snakemake.params.prepare,
        snakemake.input.obs,
        snakemake.output.h5ad,
        genes=snakemake.params.genes,
    )
