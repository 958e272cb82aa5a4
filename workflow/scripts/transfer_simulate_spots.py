"""rule simulate_spots → davae_study.groundtruth.simulate_spots_step"""
from davae_study.groundtruth import simulate_spots_step
from davae_study.pipeline import logged

with logged(snakemake.log[0]):
    simulate_spots_step(snakemake.input[0], snakemake.output.h5ad, snakemake.output.truth, **snakemake.params.simulate)
