"""cdiscforge.stats: exact signed-rank p with ties, rank-biserial effect size, edge cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from cdiscforge.stats import wilcoxon_signed_rank


def brute_force_p(changes: np.ndarray) -> float:
    """Two-sided p by listing all 2^n sign assignments of the (tied) ranks."""
    nz = changes[changes != 0]
    ranks = sps.rankdata(np.abs(nz))
    t_obs = ranks[nz > 0].sum()
    centre = ranks.sum() / 2
    signs = np.array(list(itertools.product([0, 1], repeat=len(nz))))
    sums = signs @ ranks
    return float(np.mean(np.abs(sums - centre) >= abs(t_obs - centre) - 1e-9))


def test_worked_example() -> None:
    r = wilcoxon_signed_rank([-5, -3, -2, -4, 1])
    assert (r.n, r.n_zero, r.t_plus, r.t_minus) == (5, 0, 1.0, 14.0)
    assert r.es_rank_biserial == pytest.approx(13 / 15)
    assert r.p == pytest.approx(4 / 32)  # T+ <= 1 or >= 14: 2 + 2 of 32 flips
    assert r.p_method == "exact"


def test_ties_use_the_exact_tied_distribution_not_the_untied_one() -> None:
    changes = np.array([-3, -1, -4, -1, -5, -9, 2, -6, -2, -7, -8, -10, -11.0])
    r = wilcoxon_signed_rank(changes)
    assert r.p == pytest.approx(brute_force_p(changes))
    assert r.p != pytest.approx(sps.wilcoxon(changes, method="exact").pvalue)


def test_zero_changes_are_dropped() -> None:
    r = wilcoxon_signed_rank([0, 0, -3, -2, -1, 4])
    assert (r.n, r.n_zero) == (4, 2)
    assert r.t_plus == 4.0 and r.t_minus == 6.0
    assert r.es_rank_biserial == pytest.approx(0.2)


def test_all_zero_or_empty_gives_no_test() -> None:
    r = wilcoxon_signed_rank([0, 0, np.nan])
    assert r.n == 0 and r.p == 1.0 and r.p_method == "none" and np.isnan(r.es_rank_biserial)


def test_large_n_uses_tie_corrected_normal_and_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    changes = np.round(rng.normal(-0.5, 2, 40))
    changes = changes[changes != 0]
    r = wilcoxon_signed_rank(changes)
    ref = sps.wilcoxon(changes, method="approx", correction=False)
    assert r.p_method == "normal"
    assert r.p == pytest.approx(ref.pvalue)
    assert r.r_z == pytest.approx(abs(r.z) / np.sqrt(r.n))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-6, 6), min_size=1, max_size=11))
def test_exact_p_equals_brute_force(values: list[int]) -> None:
    changes = np.array(values, dtype=float)
    r = wilcoxon_signed_rank(changes)
    if r.n == 0:
        return
    assert r.p == pytest.approx(brute_force_p(changes), abs=1e-12)
    assert r.t_plus + r.t_minus == pytest.approx(r.n * (r.n + 1) / 2)
    assert 0.0 <= r.es_rank_biserial <= 1.0
