"""rule evaluate → davae_study.pipeline.evaluate"""
from davae_study.pipeline import evaluate, logged

with logged(snakemake.log[0]):
    evaluate(
        snakemake.input[0],
        snakemake.output.tidy,
        snakemake.output.repeats,
        application=snakemake.wildcards.app,
        method=snakemake.wildcards.method,
        params=snakemake.params.metrics,
    )
