"""rule scaling_figure → davae_study.plotting.runtime.runtime_scaling (Fig 6f)"""
from davae_study.io import read_tsv
from davae_study.pipeline import logged
from davae_study.plotting.runtime import runtime_scaling

with logged(snakemake.log[0]):
    runtime_scaling(read_tsv(snakemake.input[0]), snakemake.output.png, title=snakemake.params.title)
