"""rule scaling_integrate → davae_study.scaling.run_scaling_method"""
from davae_study.pipeline import logged
from davae_study.scaling import run_scaling_method

with logged(snakemake.log[0]):
    run_scaling_method(
        snakemake.input[0],
        snakemake.output[0],
        method=snakemake.wildcards.method,
        module=snakemake.params.module,
        params=snakemake.params.params,
        seed=snakemake.params.seed,
        device=snakemake.params.device,
        threads=snakemake.threads,
    )
