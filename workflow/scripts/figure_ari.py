"""rule figure_ari → davae_study.pipeline.figure_ari"""
from davae_study.pipeline import figure_ari, logged

with logged(snakemake.log[0]):
    figure_ari(snakemake.input[0], snakemake.output.png, title=snakemake.params.title)
