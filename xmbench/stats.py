"""The statistics behind every table, plot and report of the benchmark, in one place.

- Mean, sample standard deviation (ddof=1) and n over seeds.
- 95% confidence interval of a mean: mean ± t(0.975, n-1) · sd / sqrt(n) (Student's t over seeds).
  With n = 1 there is no spread to estimate, so the interval is NaN (shown as "n=1, no CI").
- Ranks in a column of a table (one fraction): two-sided Welch t-test (unequal variances) at
  alpha = 0.05 between every pair of methods. A method's rank is 1 + the number of methods that are
  significantly better than it (higher mean and p < 0.05). Methods that no other method beats share
  rank 1 and are printed in bold, so statistically tied methods share the rank. When a pair has
  fewer than two seeds on either side no test exists and the pair is decided by the means alone
  (flagged ``tested=False``; the report says so).
- Gain over scratch: differences method − scratch paired on (fraction, seed, split sha256); mean
  gain, 95% t-interval over the pairs, two-sided paired t-test (one-sample t-test of the differences
  against 0), and Holm's step-down correction over every (method, fraction) comparison of one
  (dataset, task, engine) family. n = 1 gives NaN for the interval and the p-value, and such
  comparisons are left out of the Holm family.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special as _sp

ALPHA = 0.05
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float
    n: int
    ci_low: float
    ci_high: float


def _clean(values) -> np.ndarray:
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    return arr[np.isfinite(arr)]


def summarize(values, confidence: float = CONFIDENCE) -> Summary:
    """Mean, sd (ddof=1), n and the Student-t confidence interval of the mean (NaN when n < 2)."""
    x = _clean(values)
    n = len(x)
    if n == 0:
        return Summary(math.nan, math.nan, 0, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Summary(mean, math.nan, 1, math.nan, math.nan)
    sd = float(x.std(ddof=1))
    half = float(_sp.stdtrit(n - 1, 0.5 + confidence / 2)) * sd / math.sqrt(n)  # t quantile
    return Summary(mean, sd, n, mean - half, mean + half)


def _t_sf2(t: float, df: float) -> float:
    """Two-sided p-value of Student's t with df degrees of freedom (the CDF, without scipy's wrappers)."""
    return float(2.0 * _sp.stdtr(df, -abs(t)))


def welch_p(a, b) -> float:
    """Two-sided Welch t-test p-value; NaN when either side has fewer than two values.

    t = (mean_a - mean_b) / sqrt(va/na + vb/nb), Welch-Satterthwaite degrees of freedom. Two samples
    without any spread are equal (p = 1) or different (p = 0), never NaN.
    """
    a, b = _clean(a), _clean(b)
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return math.nan
    va, vb = a.var(ddof=1) / na, b.var(ddof=1) / nb
    diff = a.mean() - b.mean()
    if va + vb == 0:
        return 1.0 if diff == 0 else 0.0
    df = (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))
    return _t_sf2(diff / math.sqrt(va + vb), df)


def paired_p(diffs) -> float:
    """Two-sided paired t-test p-value from the paired differences (one-sample t against 0); NaN when n < 2."""
    d = _clean(diffs)
    n = len(d)
    if n < 2:
        return math.nan
    sd = d.std(ddof=1)
    if sd == 0:
        return 1.0 if d.mean() == 0 else 0.0
    return _t_sf2(d.mean() / (sd / math.sqrt(n)), n - 1)


def holm(pvalues) -> list[float]:
    """Holm's step-down adjusted p-values; NaN entries stay NaN and are not counted in the family."""
    p = [float(v) if v is not None else math.nan for v in pvalues]
    idx = [i for i, v in enumerate(p) if not math.isnan(v)]
    m = len(idx)
    out = [math.nan] * len(p)
    running = 0.0
    for k, i in enumerate(sorted(idx, key=lambda i: p[i])):
        running = max(running, min(1.0, (m - k) * p[i]))
        out[i] = running
    return out


def rank_methods(samples: dict[str, list[float]], higher_is_better: bool = True,
                 alpha: float = ALPHA) -> dict[str, dict]:
    """Rank = 1 + number of methods significantly better (Welch, alpha); ties share the rank.

    Returns per method: rank, best (rank 1), tested (False when some comparison lacked two seeds
    on a side and fell back to the means).
    """
    sign = 1.0 if higher_is_better else -1.0
    means = {m: summarize(v).mean for m, v in samples.items()}
    present = [m for m in samples if not math.isnan(means[m])]
    out: dict[str, dict] = {}
    for m in present:
        better, tested = 0, True
        for o in present:
            if o == m or sign * (means[o] - means[m]) <= 0:
                continue
            p = welch_p(samples[o], samples[m])
            if math.isnan(p):
                tested = False
                better += 1          # no test possible: the higher mean wins
            elif p < alpha:
                better += 1
        out[m] = {"rank": 1 + better, "best": better == 0, "tested": tested}
    return out
