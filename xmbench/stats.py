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
- Label-subset draws (``split.draws``): a (method, fraction) cell holds values x[d, s] over draws d and
  seeds s. The spread is split by a one-way random-effects ANOVA with the draw as the factor:
  sd_seed = sqrt(MS_within) (seeds within a draw), sd_draw = sqrt(max(0, (MS_between - MS_within) / n0))
  (the draw's own component; n0 = (N - sum n_d^2 / N) / (D - 1), the seeds per draw when balanced).
  With two draws or more the mean is the mean of the per-draw means and its interval, the ranks and the
  gain's test use those D per-draw means (D - 1 degrees of freedom): values of one draw share their
  labels and are not independent, so counting them as D * S replicates would overstate significance.
  With one draw all of this falls back to the seeds, as above.
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


@dataclass(frozen=True)
class Spread:
    """A cell's values over draws and seeds: centre, interval and the two sources of spread."""
    mean: float
    n: int
    n_draws: int
    sd_total: float       # over every value (ddof=1)
    sd_seed: float        # pooled within-draw sd: what a new seed moves
    sd_draw: float        # the draw's variance component: what new labels move
    ci_low: float
    ci_high: float
    ms_between: float
    ms_within: float


def by_draw(values, draws) -> dict[int, list[float]]:
    """Values grouped by draw (finite ones only), in draw order."""
    out: dict[int, list[float]] = {}
    for v, d in zip(values, draws):
        if v is not None and math.isfinite(float(v)):
            out.setdefault(int(d), []).append(float(v))
    return dict(sorted(out.items()))


def decompose(groups: dict[int, list[float]], confidence: float = CONFIDENCE) -> Spread:
    """The spread of one cell split into seed and draw parts (one-way random-effects ANOVA)."""
    groups = {d: _clean(v) for d, v in groups.items()}
    groups = {d: v for d, v in groups.items() if len(v)}
    k = len(groups)
    allv = np.concatenate(list(groups.values())) if groups else np.array([])
    n = len(allv)
    nan = math.nan
    if n == 0:
        return Spread(nan, 0, 0, nan, nan, nan, nan, nan, nan, nan)
    sd_total = float(allv.std(ddof=1)) if n > 1 else nan
    if k == 1:
        s = summarize(allv, confidence)
        return Spread(s.mean, n, 1, sd_total, s.std, nan, s.ci_low, s.ci_high, nan, s.std ** 2 if n > 1 else nan)
    means = np.array([v.mean() for v in groups.values()])
    sizes = np.array([len(v) for v in groups.values()], dtype=float)
    grand = allv.mean()
    ms_between = float((sizes * (means - grand) ** 2).sum() / (k - 1))
    ms_within = (float(sum(((v - v.mean()) ** 2).sum() for v in groups.values()) / (n - k)) if n > k else nan)
    n0 = (n - (sizes ** 2).sum() / n) / (k - 1)
    sd_seed = math.sqrt(ms_within) if n > k else nan
    sd_draw = math.sqrt(max(0.0, (ms_between - ms_within) / n0)) if n > k else nan
    s = summarize(means, confidence)  # the interval over the draws' means
    return Spread(s.mean, n, k, sd_total, sd_seed, sd_draw, s.ci_low, s.ci_high, ms_between, ms_within)


def replicates(groups: dict[int, list[float]]) -> list[float]:
    """The independent units of a cell: the seeds with one draw, the per-draw means with several."""
    groups = {d: _clean(v) for d, v in groups.items()}
    groups = {d: v for d, v in groups.items() if len(v)}
    if len(groups) == 1:
        return [float(x) for x in next(iter(groups.values()))]
    return [float(v.mean()) for v in groups.values()]
