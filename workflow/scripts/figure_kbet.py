"""rule figure_kbet → davae_study.pipeline.figure_kbet"""
from davae_study.pipeline import figure_kbet, logged

with logged(snakemake.log[0]):
    figure_kbet(snakemake.input.metrics, list(snakemake.input.repeats), snakemake.output.png, title=snakemake.params.title)
