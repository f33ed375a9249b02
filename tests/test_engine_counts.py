"""engine._rows_written: the reconciliation's source rows written per record block, from
one scatter of (block, row) flags, against the pandas count it replaces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cdiscforge.engine import _rows_written


@pytest.mark.parametrize(
    ("blocks", "rows", "spread"),
    [(1, 1000, 1), (3, 5000, 1), (4, 300, 10_000_000), (2, 0, 1), (5, 2000, 1)],
)
def test_rows_written_is_nunique_per_block(blocks: int, rows: int, spread: int) -> None:
    """Repeated rows (a split row gives several records) count once, a block without
    records 0, rows far apart (a sparse table: the hashed path) and row 0 alike."""
    rng = np.random.default_rng(blocks * 7 + rows)
    block = rng.integers(0, max(blocks - 1, 1), rows)  # the last block gets no record
    row = rng.integers(0, max(rows // 2, 1), rows) * spread
    records = pd.DataFrame({"__block": block, "__row": row})
    want = [int(records.loc[records["__block"] == i, "__row"].nunique()) for i in range(blocks)]
    assert _rows_written(block, row, blocks) == want


def test_rows_written_with_negative_rows() -> None:
    block = np.array([0, 0, 1, 1, 1])
    row = np.array([-3, -3, 4, -1, 4])
    assert _rows_written(block, row, 2) == [1, 2]
