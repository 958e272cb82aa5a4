"""rule aggregate_metrics → davae_study.pipeline.aggregate_metrics"""
from davae_study.pipeline import aggregate_metrics, logged

with logged(snakemake.log[0]):
    aggregate_metrics(list(snakemake.input), snakemake.output[0])
