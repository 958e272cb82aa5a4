import pandas as pd
import pytest

from davae_study.io import atomic_path, read_tsv, write_tsv


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "sub" / "table.tsv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list((tmp_path / "sub").iterdir()) == []


def test_atomic_write_replaces_old(tmp_path):
    target = tmp_path / "t.tsv"
    write_tsv(pd.DataFrame({"a": [1]}), target)
    write_tsv(pd.DataFrame({"a": [2, 3]}), target)
    assert read_tsv(target)["a"].tolist() == [2, 3]
    assert [p.name for p in tmp_path.iterdir()] == ["t.tsv"]
