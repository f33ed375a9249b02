"""cdiscforge.stats: the Wilcoxon signed-rank test the efficacy table and the calibration use.

Hand-computed and published examples, scipy cross-checks, the paper's CRP pairs (which only
r = |Z| / sqrt(N) with the asymptotic p reproduces), ties split by float noise, and the bound
that keeps the paper's tender-joint p < 0.001 out of reach of plausible data.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from cdiscforge.stats import collected_decimals, exact_two_sided_p, wilcoxon_signed_rank


def brute_force_p(changes: np.ndarray) -> float:
    """Two-sided exact p by listing all 2^n sign assignments of the (tied) ranks."""
    nz = changes[changes != 0]
    ranks = sps.rankdata(np.abs(nz))
    t_obs = ranks[nz > 0].sum()
    centre = ranks.sum() / 2
    signs = np.array(list(itertools.product([0, 1], repeat=len(nz))))
    sums = signs @ ranks
    return float(np.mean(np.abs(sums - centre) >= abs(t_obs - centre) - 1e-9))


def test_hand_computed_example() -> None:
    # |changes| 5 3 2 4 1 -> ranks 5 3 2 4 1; T+ = 1 (the +1), T- = 14; n = 5:
    # E T+ = 7.5, Var = 5*6*11/24 = 13.75, Z = -6.5 / 3.7081 = -1.7529, p = 0.0796,
    # ES = 1.7529 / sqrt(5) = 0.7839; exact: T+ <= 1 or >= 14 in 4 of 32 flips.
    r = wilcoxon_signed_rank([-5, -3, -2, -4, 1])
    assert (r.n, r.n_nonzero, r.n_zero, r.t_plus, r.t_minus) == (5, 5, 0, 1.0, 14.0)
    assert r.z == pytest.approx(-6.5 / np.sqrt(13.75))
    assert r.p == pytest.approx(0.079616, abs=1e-6)
    assert r.es == pytest.approx(6.5 / np.sqrt(13.75) / np.sqrt(5))
    assert r.p_exact == pytest.approx(4 / 32)
    assert r.rank_biserial == pytest.approx(13 / 15)


def test_published_example_hollander_wolfe() -> None:
    """Hollander & Wolfe (1973), Hamilton depression scores before (x) and after (y) a
    tranquilliser (the example in scipy's wilcoxon docs): the smaller rank sum is 5 of 45,
    n = 9, exact two-sided p = 0.0390625 (5/128); Z = (5 - 22.5) / sqrt(71.25)."""
    x = np.array([1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30])
    y = np.array([0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29])
    r = wilcoxon_signed_rank(y - x)
    assert (r.t_plus, r.t_minus, r.n) == (5.0, 40.0, 9)
    assert r.p_exact == pytest.approx(0.0390625)
    assert r.z == pytest.approx((5 - 22.5) / np.sqrt(71.25))


def test_zero_changes_are_dropped_from_ranks_but_count_in_n() -> None:
    r = wilcoxon_signed_rank([0, 0, -3, -2, -1, 4])
    assert (r.n, r.n_nonzero, r.n_zero) == (6, 4, 2)
    assert r.t_plus == 4.0 and r.t_minus == 6.0
    # Z on the 4 non-zero changes; ES divides by all 6 pairs analysed
    assert r.z == pytest.approx(-1.0 / np.sqrt(4 * 5 * 9 / 24))
    assert r.es == pytest.approx(abs(r.z) / np.sqrt(6))
    assert r.rank_biserial == pytest.approx(0.2)


def test_all_zero_or_empty_gives_no_evidence() -> None:
    r = wilcoxon_signed_rank([0, 0, np.nan])
    assert r.n == 2 and r.n_nonzero == 0 and r.p == 1.0 and r.z == 0.0 and r.es == 0.0
    assert np.isnan(wilcoxon_signed_rank([]).es)


@pytest.mark.parametrize("seed", range(6))
def test_matches_scipy_asymptotic_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    changes = np.round(rng.normal(-0.7, 2, 14))  # integer changes: ties and zeros
    r = wilcoxon_signed_rank(changes)
    ref = sps.wilcoxon(changes, zero_method="wilcox", correction=False, method="approx")
    assert r.p == pytest.approx(ref.pvalue, abs=1e-12)
    assert abs(r.z) == pytest.approx(abs(ref.zstatistic), abs=1e-12)
    nz = changes[changes != 0]
    assert min(r.t_plus, r.t_minus) == pytest.approx(sps.wilcoxon(nz, method="approx").statistic)


def test_continuity_correction_only_when_asked_and_matches_scipy() -> None:
    changes = np.array([-6, -3, -2, 1, -4, -5, -7, 2, -1.5, -8])
    plain = wilcoxon_signed_rank(changes)
    corrected = wilcoxon_signed_rank(changes, continuity_correction=True)
    ref = sps.wilcoxon(changes, correction=True, method="approx")
    assert corrected.p == pytest.approx(ref.pvalue, abs=1e-12)
    assert corrected.p > plain.p


def test_exact_p_matches_scipy_without_ties() -> None:
    changes = np.array([-3, -1, -4, 5, -9, 2, -6, -7, -8, -10, -11, 12.0])
    r = wilcoxon_signed_rank(changes)
    assert r.p_exact == pytest.approx(sps.wilcoxon(changes, method="exact").pvalue, abs=1e-12)


def test_exact_p_with_ties_is_the_tied_distribution_not_the_untied_one() -> None:
    changes = np.array([-3, -1, -4, -1, -5, -9, 2, -6, -2, -7, -8, -10, -11.0])
    r = wilcoxon_signed_rank(changes)
    assert r.p_exact == pytest.approx(brute_force_p(changes), abs=1e-12)
    assert r.p_exact != pytest.approx(sps.wilcoxon(changes, method="exact").pvalue)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-6, 6), min_size=1, max_size=11))
def test_exact_p_equals_brute_force(values: list[int]) -> None:
    changes = np.array(values, dtype=float)
    r = wilcoxon_signed_rank(changes)
    if r.n_nonzero == 0:
        return
    assert r.p_exact == pytest.approx(brute_force_p(changes), abs=1e-12)
    assert r.t_plus + r.t_minus == pytest.approx(r.n_nonzero * (r.n_nonzero + 1) / 2)
    assert 0.0 <= r.rank_biserial <= 1.0


# ---- the paper's CRP pairs: ES 0.33 with p = 0.229, ES 0.37 with p = 0.183, N = 13 ----------

# 13 CRP changes (mg/L): |values| rank 1.5, 1.5 (a tie), 3 ... 13.
CRP_W4 = np.array([0.4, -0.4, 1.1, -1.5, -2.0, -2.6, -3.1, -3.8, -4.4, -5.0, 5.9, -6.3, 7.7])
CRP_W52 = np.array([0.4, -0.4, -1.1, -1.5, -2.0, -2.6, -3.1, -3.8, -4.4, -5.0, -5.9, 6.3, 7.7])


@pytest.mark.parametrize(
    ("changes", "t_plus", "es", "p"), [(CRP_W4, 28.5, 0.33, 0.229), (CRP_W52, 26.5, 0.37, 0.183)]
)
def test_paper_crp_pairs_are_reproduced_by_r_z(
    changes: np.ndarray, t_plus: float, es: float, p: float
) -> None:
    r = wilcoxon_signed_rank(changes)
    assert r.n == 13 and r.t_plus == t_plus
    assert round(r.es, 2) == es
    assert r.p == pytest.approx(p, abs=0.01)


def test_rank_biserial_with_exact_p_cannot_give_the_paper_crp_pairs() -> None:
    """For 12-15 pairs, every sign pattern whose rank-biserial r rounds to 0.33 (or 0.37) has
    an exact p far from 0.229 (0.183): the paper did not use that pairing."""
    for n in range(12, 16):
        ranks = np.arange(1, n + 1, dtype=float)
        total = ranks.sum()
        for target, paper_p in ((0.33, 0.229), (0.37, 0.183)):
            ps = []
            for doubled in range(int(2 * total) + 1):  # T+ in half steps (ties allowed)
                t_plus = doubled / 2
                if round(abs(2 * t_plus - total) / total, 2) == target:
                    ps.append(exact_two_sided_p(ranks, t_plus))
            assert ps, (n, target)
            assert min(abs(q - paper_p) for q in ps) > 0.01, (n, target, ps)


# ---- ties split by float noise ----------------------------------------------------------------


def test_float_noise_does_not_split_ties() -> None:
    # what AVAL - BASE gives for CRP values converted from mg/dL: 0.9 twice, unequal in float
    noisy = np.array([4.7 - 3.8, 10.2 - 9.3, -1.2, -2.5, -0.9, -3.3, 1.6, -4.1, -2.5, -0.9])
    assert noisy[0] != noisy[1] and abs(noisy[0] - 0.9) < 1e-12
    rounded = np.round(noisy, 1)
    r_noisy = wilcoxon_signed_rank(noisy)  # precision inferred from the values: 1 decimal
    r_given = wilcoxon_signed_rank(noisy, decimals=1)
    r_round = wilcoxon_signed_rank(rounded, decimals=1)
    for r in (r_noisy, r_given):
        assert (r.z, r.p, r.p_exact, r.es) == (r_round.z, r_round.p, r_round.p_exact, r_round.es)
    # without rounding, scipy sees two different values and ranks them apart
    split = sps.wilcoxon(noisy, correction=False, method="approx")
    tied = sps.wilcoxon(rounded, correction=False, method="approx")
    assert split.pvalue != tied.pvalue
    assert r_round.p == pytest.approx(tied.pvalue, abs=1e-12)


def test_collected_decimals() -> None:
    assert collected_decimals([12, 3, 0]) == 0
    assert collected_decimals([0.25, 1.5]) == 2
    assert collected_decimals([47.0 * 0.1, 93 * 0.1]) == 1
    assert collected_decimals([]) == 0
    assert collected_decimals([np.pi]) == 9


# ---- the paper's tender joints: ES 0.93 with p < 0.001 needs nine equal changes of 13 ---------


def _partitions(n: int, largest: int | None = None):
    largest = n if largest is None else largest
    if n == 0:
        yield []
        return
    for k in range(min(n, largest), 0, -1):
        for rest in _partitions(n - k, k):
            yield [k, *rest]


def test_tender_p_below_0001_needs_nine_identical_changes_of_13() -> None:
    """13 pairs, all changes negative (the most extreme case): |Z| = E T+ / SD with
    SD^2 = 13*14*27/24 - sum(t^3 - t)/48 over the tie groups. Over every tie pattern, the
    asymptotic p < 0.001 holds only when one group has at least 9 equal |changes|."""
    n = 13
    reach = []
    for groups in _partitions(n):
        t = np.array(groups, dtype=float)
        var = n * (n + 1) * (2 * n + 1) / 24 - float((t**3 - t).sum()) / 48
        z = (n * (n + 1) / 4) / np.sqrt(var)
        if 2 * sps.norm.sf(z) < 0.001:
            reach.append(max(groups))
    assert reach and min(reach) == 9
    untied = wilcoxon_signed_rank(-np.arange(1, 14, dtype=float))
    assert untied.es == pytest.approx(0.882, abs=5e-4) and 0.001 < untied.p < 0.002
    assert untied.p_exact == pytest.approx(2 / 2**13)


@pytest.mark.parametrize("seed", range(20))
def test_ranks_and_p_equal_scipys_bit_for_bit(seed: int) -> None:
    """The average ranks and the normal p equal scipy.stats.rankdata and norm.sf exactly (the
    statistics module no longer imports scipy.stats): ties, negative and half changes, one
    change, large |Z| where the tail underflows towards 0."""
    from cdiscforge.stats import _average_ranks

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    changes = rng.integers(-6, 7, n) * (0.5 if seed % 2 else 1.0)
    if seed == 3:
        changes = np.full(200, 2.0)  # one tie group: |Z| far out in the tail
    nonzero = changes[changes != 0]
    if nonzero.size:
        ranks, sizes = _average_ranks(np.abs(nonzero))
        expected = sps.rankdata(np.abs(nonzero), method="average")
        assert ranks.dtype == expected.dtype and np.array_equal(ranks, expected)
        assert np.array_equal(sizes, np.unique(np.abs(nonzero), return_counts=True)[1])
    r = wilcoxon_signed_rank(changes)
    assert r.p == float(min(1.0, 2.0 * sps.norm.sf(abs(r.z))))
    for z in (0.0, 0.5, 1.96, 8.5, 40.0, float("inf")):
        assert 2.0 * sps.norm.sf(z) == 2.0 * _stats_ndtr(-z)


def _stats_ndtr(x: float) -> float:
    from scipy.special import ndtr

    return float(ndtr(x))
