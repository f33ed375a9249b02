"""Wilcoxon signed-rank test of paired changes, with the effect sizes the seed paper reports.

One home for this arithmetic: the ADaM efficacy table (adam/tables.py), the simulator's
calibration test and its seed search all call `wilcoxon_signed_rank`.

Why these definitions. The NCT03691909 paper reports, for CRP, ES 0.33 with p = 0.229 and ES 0.37
with p = 0.183 (13 pairs). Only r = |Z| / sqrt(N) with the asymptotic two-sided p fits those
pairs (|Z| = 0.33 * sqrt(13) = 1.19 gives p = 0.234; 0.37 * sqrt(13) = 1.33 gives p = 0.182);
the matched-pairs rank-biserial correlation with an exact p does not (ES 0.33 goes with exact
p of 0.28-0.34 at 12-15 pairs). So the headline is Z (tie-corrected, no continuity correction
unless asked) with its normal p and r = |Z| / sqrt(N); the exact p and the rank-biserial r are
kept as secondary statistics. Which one a table shows first is the study's tables spec's choice.

Conventions, documented once:
- Ties are real ties: changes are rounded to the precision of the collected values before they
  are ranked, so 0.8999999999999995 and 0.9000000000000021 (two CRP changes of 0.9 mg/L that
  float arithmetic split) get one average rank and the tie correction counts them.
- Zero changes are dropped from the ranks (Wilcoxon's method, as SPSS and JASP do) but they are
  pairs analysed: N in r = |Z| / sqrt(N) counts every pair with a change, zeros included, so
  the N a table prints is the N the effect size divides by.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtr  # scipy.stats costs ~1 s to import, once per build: not needed

EXACT_MAX_N = 400
"""Largest number of non-zero pairs for which the exact p is computed (NaN above it)."""

MAX_DECIMALS = 9
"""Finest precision `collected_decimals` reports; finer digits are float noise, not data."""


@dataclass(frozen=True)
class SignedRankResult:
    """Result of `wilcoxon_signed_rank`.

    n: pairs analysed (non-missing changes, zeros included: the N of the effect size);
    n_nonzero / n_zero: changes ranked / zero changes dropped; t_plus, t_minus: rank sums of the
    positive / negative changes; z: (T+ - E T+) / SD with the tie correction (and the continuity
    correction only when asked), negative when changes are mostly negative; p: asymptotic
    two-sided p from z; p_exact: two-sided p from the exact permutation distribution of T+ with
    the tied ranks kept (NaN above EXACT_MAX_N); es: |z| / sqrt(n); rank_biserial:
    |T+ - T-| / (T+ + T-); decimals: precision the changes were rounded to.
    """

    n: int
    n_nonzero: int
    n_zero: int
    t_plus: float
    t_minus: float
    z: float
    p: float
    p_exact: float
    es: float
    rank_biserial: float
    decimals: int


def collected_decimals(values: ArrayLike, max_decimals: int = MAX_DECIMALS) -> int:
    """Fewest decimals that hold every value: the precision the values were collected at.

    A value counts as held when rounding it changes it by less than 1e-9 of its magnitude
    (float noise from unit conversions is far below that). Joint counts give 0, a CRP in mg/L
    converted from mg/dL with two decimals gives 1.

    >>> collected_decimals([12, 3.0, 0.5]), collected_decimals([0.9000000000000021, 1.25])
    (1, 2)
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0
    tol = 1e-9 * np.maximum(1.0, np.abs(v))
    for d in range(max_decimals + 1):
        if bool((np.abs(np.round(v, d) - v) <= tol).all()):
            return d
    return max_decimals


def exact_two_sided_p(ranks: ArrayLike, t_plus: float) -> float:
    """P(|T+ - E T+| >= |t - E T+|) over all 2^n equally likely sign assignments of the ranks.

    Ranks may be average ranks of ties (half-integers); doubled they are integers, so the
    distribution of T+ is a convolution of two-point steps computed by dynamic programming
    (the shift algorithm), O(n * sum of ranks), in probabilities so large n does not overflow.
    """
    doubled = np.rint(np.asarray(ranks, dtype=np.float64) * 2).astype(np.int64)
    total = int(doubled.sum())
    probs = np.zeros(total + 1, dtype=np.float64)
    probs[0] = 1.0
    for step in doubled:
        shifted = np.zeros_like(probs)
        shifted[step:] = probs[: total + 1 - step]
        probs = 0.5 * (probs + shifted)
    sums = np.arange(total + 1)
    centre = total / 2.0
    observed = abs(2.0 * t_plus - centre)
    extreme = np.abs(sums - centre) >= observed - 1e-9
    return float(min(1.0, probs[extreme].sum()))


def _average_ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks 1..n of `values` (no NaN), ties sharing their average rank (scipy.stats.rankdata's
    method="average": whole or half numbers, exact in float64), and the size of each tie group
    (each distinct value's count, in sorted order)."""
    _, inverse, sizes = np.unique(values, return_inverse=True, return_counts=True)
    last = np.cumsum(sizes)  # the rank of each distinct value's last record
    average = 0.5 * ((last - sizes + 1) + last).astype(np.float64)
    return average[inverse.ravel()], sizes


def wilcoxon_signed_rank(
    changes: ArrayLike,
    *,
    decimals: int | None = None,
    continuity_correction: bool = False,
) -> SignedRankResult:
    """Wilcoxon signed-rank test of paired changes against zero (see the module docstring).

    Steps: missing changes (NaN) ignored; changes rounded to `decimals` (default: the precision
    the changes themselves show, `collected_decimals`); zeros dropped from the ranks; absolute
    changes ranked with average ranks for ties; Z with the tie correction
    Var = n(n+1)(2n+1)/24 - sum(t^3 - t)/48; p = 2 * (1 - Phi(|Z|)); exact p by the shift
    algorithm; ES = |Z| / sqrt(N), N = all pairs analysed. No non-zero change: Z = 0, p = 1.

    >>> r = wilcoxon_signed_rank([-5, -3, -2, -4, 1])
    >>> (r.t_plus, r.t_minus, round(r.z, 4), round(r.p, 4), round(r.es, 4), r.p_exact)
    (1.0, 14.0, -1.7529, 0.0796, 0.7839, 0.125)
    """
    values = np.asarray(changes, dtype=np.float64).ravel()
    values = values[~np.isnan(values)]
    d = collected_decimals(values) if decimals is None else int(decimals)
    values = np.round(values, d)
    n = int(values.size)
    nonzero = values[values != 0.0]
    m = int(nonzero.size)
    if m == 0:
        nan = float("nan")
        return SignedRankResult(n, 0, n, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0 if n else nan, nan, d)
    ranks, tie_sizes = _average_ranks(np.abs(nonzero))
    t_plus = float(ranks[nonzero > 0].sum())
    t_minus = float(ranks[nonzero < 0].sum())
    ties = float((tie_sizes.astype(np.float64) ** 3 - tie_sizes).sum())
    variance = m * (m + 1) * (2 * m + 1) / 24.0 - ties / 48.0
    diff = t_plus - m * (m + 1) / 4.0
    if continuity_correction:
        diff = np.sign(diff) * max(0.0, abs(diff) - 0.5)
    z = float(diff / np.sqrt(variance)) if variance > 0 else 0.0
    p = float(min(1.0, 2.0 * ndtr(-abs(z))))  # the normal upper tail, as scipy.stats.norm.sf
    p_exact = exact_two_sided_p(ranks, t_plus) if m <= EXACT_MAX_N else float("nan")
    return SignedRankResult(
        n=n,
        n_nonzero=m,
        n_zero=n - m,
        t_plus=t_plus,
        t_minus=t_minus,
        z=z,
        p=p,
        p_exact=p_exact,
        es=float(abs(z) / np.sqrt(n)),
        rank_biserial=float(abs(t_plus - t_minus) / (t_plus + t_minus)),
        decimals=d,
    )


STATISTICS = {
    "Z": "z",
    "P": "p",
    "P_EXACT": "p_exact",
    "ES": "es",
    "RB": "rank_biserial",
    "N_NONZERO": "n_nonzero",
}
"""Statistic codes a tables spec may name (analysis-results STAT column) -> result field."""
