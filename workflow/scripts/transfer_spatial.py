"""rule spatial_clusters → davae_study.groundtruth.spatial_clusters_step"""
from davae_study.groundtruth import spatial_clusters_step
from davae_study.pipeline import logged

with logged(snakemake.log[0]):
    spatial_clusters_step(
        snakemake.input.prepared,
        snakemake.input.integrated,
        snakemake.output[0],
        truth_path=snakemake.input.truth[0] if snakemake.input.truth else None,
        seed=snakemake.params.seed,
        **snakemake.params.spatial,
    )
