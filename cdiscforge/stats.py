"""Wilcoxon signed-rank test with the effect size the seed paper reports.

The NCT03691909 paper reports effect sizes (e.g. 0.93 with 13 pairs) that r = |Z|/sqrt(N) cannot
reach without heavy ties; they match the matched-pairs rank-biserial correlation
|T+ - T-| / (T+ + T-) (JASP's default for this test). So the simulator's calibration check and
the ADaM efficacy table both need: zero changes dropped, average ranks for ties, the exact
two-sided p over all 2^n sign flips with the tied ranks kept, and the rank-biserial effect size.
One home for that arithmetic, here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as _sps

EXACT_MAX_N = 20
"""Largest number of non-zero pairs for which p comes from the exact distribution (2^20 flips)."""


@dataclass(frozen=True)
class SignedRankResult:
    """Result of `wilcoxon_signed_rank`.

    n: non-zero changes used; n_zero: zero changes dropped; t_plus / t_minus: rank sums of the
    positive / negative changes; z: normal approximation with tie correction (no continuity
    correction); p: two-sided p-value, exact when p_method == "exact"; es_rank_biserial:
    |T+ - T-| / (T+ + T-); r_z: |z| / sqrt(n), the other effect size some papers use.
    """

    n: int
    n_zero: int
    t_plus: float
    t_minus: float
    z: float
    p: float
    p_method: Literal["exact", "normal", "none"]
    es_rank_biserial: float
    r_z: float

    @property
    def p_exact(self) -> float:
        """The p-value under the name the brief uses (exact for n <= EXACT_MAX_N)."""
        return self.p


def _exact_two_sided_p(ranks: np.ndarray, t_plus: float) -> float:
    """P(|T+ - E T+| >= |t - E T+|) over all 2^n equally likely sign assignments.

    Ranks may be half-integers (ties); doubling them makes every rank sum an integer, so the
    distribution is a convolution of integer steps computed by dynamic programming in O(n * sum).
    """
    doubled = np.rint(ranks * 2).astype(np.int64)
    total = int(doubled.sum())
    counts = np.zeros(total + 1, dtype=np.float64)
    counts[0] = 1.0
    for step in doubled:
        shifted = np.zeros_like(counts)
        shifted[step:] = counts[: total + 1 - step]
        counts = counts + shifted
    probs = counts / counts.sum()
    sums = np.arange(total + 1)
    centre = total / 2.0
    observed = abs(2.0 * t_plus - centre)
    extreme = np.abs(sums - centre) >= observed - 1e-9
    return float(min(1.0, probs[extreme].sum()))


def wilcoxon_signed_rank(changes: ArrayLike) -> SignedRankResult:
    """Wilcoxon signed-rank test of paired changes against zero.

    Cases, in the order applied:
    1. missing changes (NaN) are ignored;
    2. zero changes are dropped (counted in n_zero), as JASP and the paper do;
    3. no non-zero change left -> p = 1, effect sizes NaN, p_method "none";
    4. absolute changes ranked with average ranks for ties;
    5. n <= EXACT_MAX_N -> exact p over all 2^n sign flips with the tied ranks; else normal p
       from the tie-corrected z.

    >>> r = wilcoxon_signed_rank([-5, -3, -2, -4, 1])
    >>> (r.t_plus, r.t_minus, round(r.es_rank_biserial, 3), round(r.p, 4))
    (1.0, 14.0, 0.867, 0.125)
    """
    values = np.asarray(changes, dtype=np.float64).ravel()
    values = values[~np.isnan(values)]
    nonzero = values[values != 0.0]
    n = int(nonzero.size)
    n_zero = int(values.size - n)
    if n == 0:
        nan = float("nan")
        return SignedRankResult(0, n_zero, 0.0, 0.0, nan, 1.0, "none", nan, nan)
    ranks = _sps.rankdata(np.abs(nonzero), method="average")
    t_plus = float(ranks[nonzero > 0].sum())
    t_minus = float(ranks[nonzero < 0].sum())
    _, tie_sizes = np.unique(ranks, return_counts=True)
    variance = n * (n + 1) * (2 * n + 1) / 24.0 - float((tie_sizes**3 - tie_sizes).sum()) / 48.0
    mean = n * (n + 1) / 4.0
    z = (t_plus - mean) / np.sqrt(variance) if variance > 0 else 0.0
    if n <= EXACT_MAX_N:
        p = _exact_two_sided_p(ranks, t_plus)
        method: Literal["exact", "normal", "none"] = "exact"
    else:
        p = float(2.0 * _sps.norm.sf(abs(z)))
        method = "normal"
    es = abs(t_plus - t_minus) / (t_plus + t_minus)
    return SignedRankResult(
        n=n,
        n_zero=n_zero,
        t_plus=t_plus,
        t_minus=t_minus,
        z=float(z),
        p=p,
        p_method=method,
        es_rank_biserial=float(es),
        r_z=float(abs(z) / np.sqrt(n)),
    )
