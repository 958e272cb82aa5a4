"""rule summary → davae_study.pipeline.summarise_applications"""
from davae_study.pipeline import logged, summarise_applications

with logged(snakemake.log[0]):
    summarise_applications(list(snakemake.input), snakemake.output[0])
