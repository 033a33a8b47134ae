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
_sum = np.add.reduce   # the pairwise sum behind ndarray.mean and .var


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float
    n: int
    ci_low: float
    ci_high: float


@dataclass(frozen=True, eq=False)
class Moments:
    """A sample's finite values with their n, mean and variance (ddof=1) reduced once, rounded as
    ndarray.mean and .var round them: a table's cells are summarised, ranked and tested from
    these, so the same 100 values are not reduced again by every statistic (numpy's per-call cost
    on small arrays outweighed the arithmetic)."""
    values: np.ndarray
    n: int
    mean: np.float64      # NaN when empty
    var: np.float64       # NaN when n < 2


def _clean(values) -> np.ndarray:
    arr = np.asarray(values if isinstance(values, (list, tuple, np.ndarray)) else list(values), dtype=float)
    return arr[np.isfinite(arr)]  # None became NaN


def moments(values) -> Moments:
    """The finite values' moments, as x.mean() and x.var(ddof=1) compute them (numpy's _methods)."""
    x = _clean(values)
    n = len(x)
    if n == 0:
        return Moments(x, 0, np.float64(math.nan), np.float64(math.nan))
    mean = _sum(x) / n
    if n == 1:
        return Moments(x, 1, mean, np.float64(math.nan))
    dev = x - mean
    return Moments(x, n, mean, _sum(dev * dev) / (n - 1))


def summary_of(m: Moments, confidence: float = CONFIDENCE) -> Summary:
    """summarize() of a sample whose moments are known."""
    n = m.n
    if n == 0:
        return Summary(math.nan, math.nan, 0, math.nan, math.nan)
    mean = float(m.mean)
    if n == 1:
        return Summary(mean, math.nan, 1, math.nan, math.nan)
    sd = math.sqrt(m.var)
    half = float(_sp.stdtrit(n - 1, 0.5 + confidence / 2)) * sd / math.sqrt(n)  # t quantile
    return Summary(mean, sd, n, mean - half, mean + half)


def summarize(values, confidence: float = CONFIDENCE) -> Summary:
    """Mean, sd (ddof=1), n and the Student-t confidence interval of the mean (NaN when n < 2)."""
    return summary_of(moments(values), confidence)


def _t_sf2(t: float, df: float) -> float:
    """Two-sided p-value of Student's t with df degrees of freedom (the CDF, without scipy's wrappers)."""
    return float(2.0 * _sp.stdtr(df, -abs(t)))


def welch_of(a: Moments, b: Moments) -> float:
    """welch_p() of two samples whose moments are known."""
    na, nb = a.n, b.n
    if na < 2 or nb < 2:
        return math.nan
    va, vb = a.var / na, b.var / nb
    diff = a.mean - b.mean
    if va + vb == 0:
        return 1.0 if diff == 0 else 0.0
    df = (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))
    return _t_sf2(diff / math.sqrt(va + vb), df)


def welch_p(a, b) -> float:
    """Two-sided Welch t-test p-value; NaN when either side has fewer than two values.

    t = (mean_a - mean_b) / sqrt(va/na + vb/nb), Welch-Satterthwaite degrees of freedom. Two samples
    without any spread are equal (p = 1) or different (p = 0), never NaN.
    """
    return welch_of(moments(a), moments(b))


def paired_of(d: Moments) -> float:
    """paired_p() of differences whose moments are known."""
    n = d.n
    if n < 2:
        return math.nan
    sd = math.sqrt(d.var)
    if sd == 0:
        return 1.0 if d.mean == 0 else 0.0
    return _t_sf2(d.mean / (sd / math.sqrt(n)), n - 1)


def paired_p(diffs) -> float:
    """Two-sided paired t-test p-value from the paired differences (one-sample t against 0); NaN when n < 2."""
    return paired_of(moments(diffs))


def paired_rows(ok: list[tuple], baseline: str) -> list[tuple]:
    """The pairing of the gains (above): (method, fraction, draw, seed, split, value, baseline value,
    gain) of every non-baseline run of ``ok`` (rows of (method, fraction, draw, seed, split, value)),
    its partner the first baseline run on the same fraction, draw, seed and split (NaN where none)."""
    base: dict = {}
    for m, f, k, s, sp, v in ok:
        if m == baseline:
            base.setdefault((f, k, s, sp), v)
    out = []
    for m, f, k, s, sp, v in ok:
        if m != baseline:
            b = base.get((f, k, s, sp), math.nan)
            b = math.nan if b is None else b
            out.append((m, f, k, s, sp, v, b, v - b))
    return out


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


def rank_of(samples: dict[str, Moments], higher_is_better: bool = True, alpha: float = ALPHA) -> dict[str, dict]:
    """rank_methods() of samples whose moments are known."""
    sign = 1.0 if higher_is_better else -1.0
    means = {m: float(v.mean) if v.n else math.nan for m, v in samples.items()}
    present = [m for m in samples if not math.isnan(means[m])]
    out: dict[str, dict] = {}
    for m in present:
        better, tested = 0, True
        for o in present:
            if o == m or sign * (means[o] - means[m]) <= 0:
                continue
            p = welch_of(samples[o], samples[m])
            if math.isnan(p):
                tested = False
                better += 1          # no test possible: the higher mean wins
            elif p < alpha:
                better += 1
        out[m] = {"rank": 1 + better, "best": better == 0, "tested": tested}
    return out


def rank_methods(samples: dict[str, list[float]], higher_is_better: bool = True,
                 alpha: float = ALPHA) -> dict[str, dict]:
    """Rank = 1 + number of methods significantly better (Welch, alpha); ties share the rank.

    Returns per method: rank, best (rank 1), tested (False when some comparison lacked two seeds
    on a side and fell back to the means).
    """
    return rank_of({m: moments(v) for m, v in samples.items()}, higher_is_better, alpha)


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


def spread_of(groups: dict[int, Moments], confidence: float = CONFIDENCE) -> Spread:
    """decompose() of draws whose moments are known."""
    groups = {d: v for d, v in groups.items() if v.n}
    k = len(groups)
    nan = math.nan
    if k == 0:
        return Spread(nan, 0, 0, nan, nan, nan, nan, nan, nan, nan)
    if k == 1:
        (one,) = groups.values()
        n = one.n
        s = summary_of(one, confidence)
        return Spread(s.mean, n, 1, s.std, s.std, nan, s.ci_low, s.ci_high, nan, s.std ** 2 if n > 1 else nan)
    arrays = [v.values for v in groups.values()]
    allv = moments(np.concatenate(arrays))
    n = allv.n
    sd_total = math.sqrt(allv.var)
    means = np.array([v.mean for v in groups.values()])
    sizes = np.array([v.n for v in groups.values()], dtype=float)
    grand = allv.mean
    ms_between = float((sizes * (means - grand) ** 2).sum() / (k - 1))
    ms_within = (float(sum(((v - v.mean()) ** 2).sum() for v in arrays) / (n - k)) if n > k else nan)
    n0 = (n - (sizes ** 2).sum() / n) / (k - 1)
    sd_seed = math.sqrt(ms_within) if n > k else nan
    sd_draw = math.sqrt(max(0.0, (ms_between - ms_within) / n0)) if n > k else nan
    s = summary_of(moments(means), confidence)  # the interval over the draws' means
    return Spread(s.mean, n, k, sd_total, sd_seed, sd_draw, s.ci_low, s.ci_high, ms_between, ms_within)


def decompose(groups: dict[int, list[float]], confidence: float = CONFIDENCE) -> Spread:
    """The spread of one cell split into seed and draw parts (one-way random-effects ANOVA)."""
    return spread_of({d: moments(v) for d, v in groups.items()}, confidence)


def replicates_of(groups: dict[int, Moments]) -> Moments:
    """replicates() of draws whose moments are known: the one draw itself, or its draws' means."""
    groups = [v for v in groups.values() if v.n]
    if len(groups) == 1:
        return groups[0]
    return moments([float(v.mean) for v in groups])


def replicates(groups: dict[int, list[float]]) -> list[float]:
    """The independent units of a cell: the seeds with one draw, the per-draw means with several."""
    return [float(x) for x in replicates_of({d: moments(v) for d, v in groups.items()}).values]
