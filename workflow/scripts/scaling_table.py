"""rule scaling_table → davae_study.scaling.benchmark_table / growth_table"""
import h5py
from anndata.io import read_elem

from davae_study.io import write_tsv
from davae_study.pipeline import logged
from davae_study.scaling import benchmark_table, growth_table


def method_info(path):
    with h5py.File(path, "r") as f:  # uns only: the embeddings are not needed here
        return read_elem(f["uns/method"])


with logged(snakemake.log[0]):
    infos = [method_info(p) for p in snakemake.input.results]
    table = benchmark_table(zip(snakemake.params.methods, snakemake.params.n_cells, snakemake.input.bench), infos)
    write_tsv(table, snakemake.output.table)
    write_tsv(growth_table(table, ("s", "max_rss", "method_wall_s", "method_peak_rss_mb")), snakemake.output.growth)
