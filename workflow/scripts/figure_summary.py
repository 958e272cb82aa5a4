"""rule figure_summary → davae_study.pipeline.figure_summary"""
from davae_study.pipeline import figure_summary, logged

with logged(snakemake.log[0]):
    figure_summary(snakemake.input[0], snakemake.output.png)
