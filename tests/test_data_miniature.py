"""The miniature of the paper's inputs: every data-table file, in its real format, read by the real readers."""

from __future__ import annotations

import gzip
import tarfile
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from davae_study.data import readers
from davae_study.data.download import load_sources
from davae_study.data.miniature import main, miniature_sources, write_miniature
from davae_study.data.provenance import rows_from_uns

from conftest import REPO

TABLE = REPO / "config" / "data_sources.yaml"


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    out = tmp_path_factory.mktemp("mini")
    assert main([str(out), "--seed", "0", "--sources", str(TABLE)]) == 0
    return out


def test_every_file_of_the_data_table_in_its_layout(mini):
    real = load_sources(TABLE)
    table = load_sources(mini / "data_sources.yaml")
    assert set(table) == set(real) and all((mini / k).is_file() for k in real)
    # pinned checksums stay pinned (to the miniature's bytes), unpinned ones are learnt on first download
    for k, e in real.items():
        assert (table[k]["sha256"] is not None) == (e.get("sha256") is not None), k
    # 10x Cell Ranger 1.1: filtered_gene_bc_matrices/hg19/{matrix.mtx, genes.tsv, barcodes.tsv}
    with tarfile.open(mini / "tenx_cell_lines/jurkat_filtered_gene_bc_matrices.tar.gz") as t:
        assert sorted(t.getnames()) == [f"filtered_gene_bc_matrices/hg19/{n}"
                                        for n in ("barcodes.tsv", "genes.tsv", "matrix.mtx")]
    # Scanorama's archive member, one line per cell that passes the >= 600-gene filter: one short of all cells
    key = "scanorama/293t_jurkat_cluster.txt"
    with tarfile.open(mini / key) as t:
        labels = t.extractfile(real[key]["extract"]).read().decode().split()
    n_cells = sum(table[f"tenx_cell_lines/{n}_filtered_gene_bc_matrices.tar.gz"]["expected"]["cells"]
                  for n in ("293t", "jurkat", "jurkat_293t_50_50"))
    assert len(labels) == n_cells - 1 and set(labels) == {"293t", "jurkat"}
    # ATAC peaks chr1:start-end, GTF chromosomes '1'
    with h5py.File(mini / "pbmc10k/atac_v1_pbmc_10k_filtered_peak_bc_matrix.h5") as f:
        peaks = [x.decode() for x in f["matrix/features/name"][:]]
        assert set(x.decode() for x in f["matrix/features/feature_type"][:]) == {"Peaks"}
    assert all(p.startswith("chr") and ":" in p and "-" in p for p in peaks)
    gtf_key = next(k for k in real if k.startswith("reference/"))
    with gzip.open(mini / gtf_key, "rt") as fh:
        chroms = {line.split("\t")[0] for line in fh if not line.startswith("#")}
    assert chroms <= {"1", "2", "X"} and "1" in chroms
    with h5py.File(mini / "hca/ica_cord_blood_h5.h5") as f:
        assert list(f) == ["GRCh38"] and f["GRCh38/barcodes"][0].decode().startswith("MantonCB")
    with tarfile.open(mini / "visium/V1_Mouse_Brain_Sagittal_Posterior_spatial.tar.gz") as t:
        assert {"spatial/tissue_positions_list.csv", "spatial/scalefactors_json.json"} <= set(t.getnames())


def test_same_seed_same_bytes_for_text_files(tmp_path):
    a, b = write_miniature(tmp_path / "a", TABLE, seed=3), write_miniature(tmp_path / "b", TABLE, seed=3)
    for k in a:
        if not k.endswith(".h5"):  # HDF5 object headers may differ; their arrays are compared by the readers
            assert a[k]["sha256"] == b[k]["sha256"], k
    c = write_miniature(tmp_path / "c", TABLE, seed=4)
    assert c["villani/GSE94820_raw.expMatrix_DCnMono.discovery.set.submission.txt.gz"]["sha256"] != \
        a["villani/GSE94820_raw.expMatrix_DCnMono.discovery.set.submission.txt.gz"]["sha256"]


def test_the_paper_readers_read_it_with_every_shape_as_stated(mini, tmp_path):
    """Each application of config/config.yaml read from the miniature: every part 'ok' against the miniature's
    table, two or more batches, several cell types where labelled."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    table = load_sources(mini / "data_sources.yaml")
    for app, spec in cfg["applications"].items():
        paths = {}
        for role, p in spec["input"]["files"].items():
            key = Path(p).relative_to("resources").as_posix()
            src = mini / key
            if table[key].get("extract"):  # what the download rule keeps of an archive
                with tarfile.open(src) as t:
                    (tmp_path / "labels.txt").write_bytes(t.extractfile(table[key]["extract"]).read())
                src = tmp_path / "labels.txt"
            paths[role] = str(src)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            a = readers.PAPER_READERS[spec["input"]["reader"]](
                {r: str(p) for r, p in paths.items()}, expected=readers.expected_for(
                    {r: spec["input"]["files"][r] for r in paths}, mini / "data_sources.yaml"),
                **spec["input"].get("params", {}))
        rows = rows_from_uns(a.uns["provenance"])
        assert rows and all(r["status"] == "ok" for r in rows), (app, rows)
        assert a.obs["batch"].nunique() >= 2, app
        if "cell_type" in a.obs and app != "hca":
            assert a.obs["cell_type"].nunique() >= 2, app
        if app == "spatial":
            spots = (a.obs["role"] == "query").to_numpy()
            assert np.isfinite(a.obsm["spatial"][spots]).all()


def test_miniature_table_needs_every_file(tmp_path):
    table = dict(load_sources(TABLE))
    table["extra/new_file.h5"] = {"url": "https://example.org/new_file.h5"}
    with pytest.raises(ValueError, match="new_file.h5"):
        write_miniature(tmp_path, table)
    records = write_miniature(tmp_path / "ok", TABLE)
    assert set(miniature_sources(TABLE, records)["files"]) == set(load_sources(TABLE))
