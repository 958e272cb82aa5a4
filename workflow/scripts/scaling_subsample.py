"""rule scaling_subsample → davae_study.scaling.make_size"""
import anndata as ad

from davae_study.io import write_h5ad
from davae_study.pipeline import logged
from davae_study.scaling import make_size

with logged(snakemake.log[0]):
    source = ad.read_h5ad(snakemake.input[0])
    kwargs = {"depth_sd": snakemake.params.depth_sd} if snakemake.params.mode == "resample" else {}
    out = make_size(source, int(snakemake.wildcards.n_cells), mode=snakemake.params.mode,
                    seed=snakemake.params.seed, **kwargs)
    del source
    write_h5ad(out, snakemake.output[0], compression=None)
