"""Gene activity (peaks -> genes, gene body + 2 kb upstream, strand aware) on a hand-made fixture."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from davae_study.data.gene_activity import gene_activity, gene_windows, parse_peaks, read_gtf_genes


@pytest.fixture
def gtf(tmp_path):
    # chrom, start, end, strand, name (1-based closed). Window = body + 2,000 bp on the 5' side.
    rows = [
        ("chr1", 10_000, 12_000, "+", "PLUS"),      # window  8,000-12,000
        ("chr1", 20_000, 22_000, "-", "MINUS"),     # window 20,000-24,000
        ("chr1", 11_500, 30_000, "+", "LONG"),      # window  9,500-30,000 (overlaps both above)
        ("chr1", 1_000, 1_500, "+", "EDGE"),        # window clipped at 1: 1-1,500
        ("chrX", 5_000, 6_000, "-", "DUP"),         # two records of one gene name: a peak in both
        ("chrX", 5_500, 7_000, "-", "DUP"),         #   counts once
        ("chr1", 40_000, 41_000, "+", "NOPEAK"),
        ("chrUn_gl000220", 1, 10_000, "+", "UNPLACED"),
    ]
    path = tmp_path / "genes.gtf"
    with open(path, "w") as fh:
        fh.write("#!genome-build test\n")
        for i, (c, s, e, st, n) in enumerate(rows):
            attrs = f'gene_id "G{i}"; gene_name "{n}"; gene_biotype "protein_coding";'
            fh.write(f"{c}\tt\tgene\t{s}\t{e}\t.\t{st}\t.\t{attrs}\n")
            fh.write(f"{c}\tt\texon\t{s}\t{s + 10}\t.\t{st}\t.\t{attrs}\n")  # non-gene records are ignored
    return path


PEAKS = [
    "chr1:7000-7999",      # 0: 1 bp before PLUS's upstream window -> nothing
    "chr1:7500-8000",      # 1: touches PLUS window start (upstream side) -> PLUS
    "chr1:9000-9200",      # 2: PLUS upstream only (LONG window starts 9,500)
    "chr1:11000-11600",    # 3: PLUS body and LONG body -> both
    "chr1:23000-23500",    # 4: MINUS upstream (downstream of its end coordinate), LONG body -> both
    "chr1:18000-18500",    # 5: 18 kb: upstream side of a '-' gene would be 22-24 kb: only LONG
    "chr1:24001-25000",    # 6: 1 bp after MINUS window -> LONG only
    "chrX:5600-5700",      # 7: both DUP records -> DUP once
    "chrX:6500-6600",      # 8: second DUP record only -> DUP
    "chr1:1200-1300",      # 9: EDGE body
    "chr2:100-200",        # 10: no gene on chr2
]

# expected peak -> genes
TRUTH = {1: ["PLUS"], 2: ["PLUS"], 3: ["PLUS", "LONG"], 4: ["MINUS", "LONG"], 5: ["LONG"], 6: ["LONG"],
         7: ["DUP"], 8: ["DUP"], 9: ["EDGE"]}


def test_gtf_reader_normalises_chromosomes_and_filters(gtf):
    g = read_gtf_genes(gtf)
    assert "UNPLACED" not in set(g["gene_name"])  # not in the default seq levels 1-22, X, Y
    assert set(g["chrom"]) == {"1", "X"} and len(g) == 7
    assert len(read_gtf_genes(gtf, seq_levels=None)) == 8
    assert read_gtf_genes(gtf, gene_biotypes=["lncRNA"], seq_levels=None).empty


def test_windows_are_strand_aware(gtf):
    w = gene_windows(read_gtf_genes(gtf), upstream=2000).set_index("gene_name")
    assert tuple(w.loc["PLUS", ["start", "end"]]) == (8000, 12000)
    assert tuple(w.loc["MINUS", ["start", "end"]]) == (20000, 24000)
    assert tuple(w.loc["EDGE", ["start", "end"]]) == (1, 1500)


def test_gene_activity_known_answer(gtf):
    rng = np.random.default_rng(0)
    counts = sparse.random(25, len(PEAKS), density=0.6, random_state=1, format="csr",
                           data_rvs=lambda n: rng.integers(1, 6, n)).astype(np.float32)
    act, names, stats = gene_activity(counts, PEAKS, read_gtf_genes(gtf), upstream=2000)
    assert sparse.isspmatrix_csr(act) and act.shape == (25, len(names))
    assert list(names) == ["PLUS", "MINUS", "LONG", "EDGE", "DUP", "NOPEAK"]
    dense = counts.toarray()
    for j, gene in enumerate(names):
        peaks_of_gene = [p for p, genes in TRUTH.items() if gene in genes]
        np.testing.assert_allclose(act[:, j].toarray().ravel(), dense[:, peaks_of_gene].sum(axis=1), err_msg=gene)
    assert stats["n_peaks_in_windows"] == len(TRUTH)
    assert stats["frac_peaks_in_windows"] == pytest.approx(len(TRUTH) / len(PEAKS))


def test_upstream_zero_is_gene_body_only(gtf):
    counts = sparse.identity(len(PEAKS), format="csr", dtype=np.float32)  # one cell per peak
    act, names, _ = gene_activity(counts, PEAKS, read_gtf_genes(gtf), upstream=0)
    A = pd.DataFrame(act.toarray(), columns=names)
    assert A.loc[2, "PLUS"] == 0 and A.loc[3, "PLUS"] == 1   # upstream-only peak drops out
    assert A.loc[4, "MINUS"] == 0 and A.loc[4, "LONG"] == 1


def test_peak_name_formats_and_errors(gtf):
    p = parse_peaks(["chr1:10-20", "chr1-30-40", "1_50_60", "chrM:1-2"])
    assert list(p["chrom"]) == ["1", "1", "1", "MT"] and list(p["start"]) == [10, 30, 50, 1]
    with pytest.raises(ValueError, match="cannot parse peak name"):
        parse_peaks(["chr1:10"])
    with pytest.raises(ValueError, match="peak names"):
        gene_activity(sparse.csr_matrix((2, 3)), PEAKS, read_gtf_genes(gtf))
