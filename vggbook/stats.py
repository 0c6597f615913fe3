"""Statistics for testing the paper's findings: two classifiers on the same test images.

Conventions: errors are percentages, effects are percentage points, and an effect is
``error_a - error_b``, so a positive effect means B (the second argument) is better.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

if TYPE_CHECKING:
    import torch

    Correctness = np.ndarray | torch.Tensor | Sequence[bool]


@dataclass(frozen=True)
class Comparison:
    """Two classifiers on the same n images (errors in percent, effect and ci in points)."""

    n: int
    error_a: float
    error_b: float
    effect: float  # error_a - error_b: positive means B is better
    only_a: int  # images only A classifies correctly
    only_b: int  # images only B classifies correctly
    p: float  # two-sided exact McNemar p
    ci: tuple[float, float]  # 95% paired bootstrap interval of the effect


@dataclass(frozen=True)
class SeedComparison:
    """Two training configurations over n paired seeds (errors in percent, effect in points)."""

    n: int
    mean_a: float
    mean_b: float
    effect: float  # mean of error_a - error_b over seeds: positive means B is better
    ci: tuple[float, float]  # 95% t interval of the effect
    p: float  # two-sided paired t-test p


def _correctness(correct_a: Correctness, correct_b: Correctness) -> tuple[np.ndarray, np.ndarray]:
    """Both per-image correctness vectors as 1-D bool arrays of the same, non-zero length."""
    out = []
    for x in (correct_a, correct_b):
        x = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x)
        if x.ndim != 1 or x.size == 0:
            raise ValueError(f"correctness must be a non-empty 1-D vector, got shape {x.shape}")
        if x.dtype != bool and not np.isin(x, (0, 1)).all():
            raise ValueError("correctness must be boolean (or 0/1)")
        out.append(x.astype(bool))
    if len(out[0]) != len(out[1]):
        raise ValueError(f"correctness lengths differ: {len(out[0])} vs {len(out[1])} images")
    return out[0], out[1]


def paired_bootstrap(
    correct_a: Correctness,
    correct_b: Correctness,
    *,
    resamples: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``error_a - error_b`` in points, resampling images.

    ``scipy.stats.bootstrap`` on the per-image differences ``correct_b - correct_a`` (their
    mean is the effect), which is the paired bootstrap; deterministic under ``seed``.
    """
    a, b = _correctness(correct_a, correct_b)
    diff = b.astype(np.int8) - a.astype(np.int8)
    res = stats.bootstrap(
        (diff,),
        np.mean,
        n_resamples=resamples,
        batch=max(1, 2_000_000 // len(diff)),  # about 2M resampled images in memory at a time
        confidence_level=level,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    lo, hi = res.confidence_interval
    return 100 * float(lo), 100 * float(hi)


def _mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact McNemar's two-sided p: ``binomtest`` on the discordant pairs (1 without any)."""
    discordant = only_a + only_b
    return float(stats.binomtest(only_a, discordant, 0.5).pvalue) if discordant else 1.0


def mcnemar(
    correct_a: Correctness, correct_b: Correctness, *, resamples: int = 10_000, seed: int = 0
) -> Comparison:
    """Exact McNemar test of two classifiers' per-image correctness on the same images.

    p is ``binomtest(only_a, only_a + only_b, 0.5)`` (two-sided; 1 with no discordant images);
    ci is the 95% ``paired_bootstrap`` interval with the given ``resamples`` and ``seed``.
    """
    a, b = _correctness(correct_a, correct_b)
    n = len(a)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    return Comparison(
        n=n,
        error_a=100 * int((~a).sum()) / n,
        error_b=100 * int((~b).sum()) / n,
        effect=100 * (only_b - only_a) / n,
        only_a=only_a,
        only_b=only_b,
        p=_mcnemar_p(only_a, only_b),
        ci=paired_bootstrap(a, b, resamples=resamples, seed=seed),
    )


def seed_level(errors_a: Sequence[float], errors_b: Sequence[float]) -> SeedComparison:
    """Paired t-test (``scipy.stats.ttest_rel``) of per-seed errors of two configurations.

    ``errors_a[i]`` and ``errors_b[i]`` come from the same seed; needs at least two seeds.
    Differences without spread give a zero-width ci and p = 0 (NaN if they are all zero).
    """
    a, b = np.asarray(errors_a, dtype=float), np.asarray(errors_b, dtype=float)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"per-seed errors must be 1-D of equal length, got {a.shape}, {b.shape}")
    if len(a) < 2:
        raise ValueError(f"a paired t-test needs at least 2 seeds, got {len(a)}")
    res = stats.ttest_rel(a, b)
    lo, hi = res.confidence_interval(0.95)
    return SeedComparison(
        n=len(a),
        mean_a=float(a.mean()),
        mean_b=float(b.mean()),
        effect=float((a - b).mean()),
        ci=(float(lo), float(hi)),
        p=float(res.pvalue),
    )


@dataclass(frozen=True)
class BoundedComparison:
    """Paired per-seed differences each known only to lie within bounds (censored times)."""

    n: int
    effect: float  # the mean of the lower bounds where all are known, else of the upper; or NaN
    ci: tuple[float, float]  # -inf or inf where a side is unbounded in some seed
    p: float  # two-sided


def bounded_paired(
    lower: Sequence[float], upper: Sequence[float], *, level: float = 0.95
) -> BoundedComparison:
    """The mean of n paired differences, seed i's known only to lie in ``[lower[i],
    upper[i]]``: a censored time bounds its difference on one side, ``-inf`` or ``inf`` on the
    other. The interval's lower end is the t interval's (``scipy.stats.ttest_1samp``) of the
    lower bounds, its upper end that of the upper bounds, each conservative, so it covers the
    mean at least at ``level``; an end is infinite where a seed leaves that side unbounded, or
    with fewer than two seeds. p is twice the smaller one-sided p (the lower bounds above 0,
    the upper bounds below), 1 where neither side is bounded. Bounds without spread give that
    end exactly, p 0 beyond 0.
    """
    lo, hi = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    if lo.ndim != 1 or lo.shape != hi.shape or (lo > hi).any():
        raise ValueError(f"need each seed's bounds with lower <= upper, got {lo}, {hi}")

    def side(x: np.ndarray, end: int, alternative: str) -> tuple[float, float]:
        """(the interval's end from these bounds, the one-sided p that the mean is beyond 0)."""
        if len(x) < 2 or not np.isfinite(x).all():
            return (-math.inf, math.inf)[end], 1.0
        if np.ptp(x) == 0:
            beyond = x[0] > 0 if alternative == "greater" else x[0] < 0
            return float(x[0]), 0.0 if beyond else 1.0
        ci = stats.ttest_1samp(x, 0.0).confidence_interval(level)
        return float((ci.low, ci.high)[end]), float(
            stats.ttest_1samp(x, 0.0, alternative=alternative).pvalue
        )

    low, p_above = side(lo, 0, "greater")
    high, p_below = side(hi, 1, "less")
    known = [float(x.mean()) for x in (lo, hi) if len(x) and np.isfinite(x).all()]
    effect = known[0] if known else math.nan
    return BoundedComparison(len(lo), effect, (low, high), min(1.0, 2 * min(p_above, p_below)))


@dataclass(frozen=True)
class PairedShares:
    """Two yes-or-no outcomes of the same n units (seeds), e.g. whether each of two
    initialisations of a seed's net leaves chance."""

    n: int
    share_a: float
    share_b: float
    effect: float  # share_a - share_b
    only_a: int  # units where only A's outcome is yes
    only_b: int
    ci: tuple[float, float]  # Newcombe's square-and-add interval of the effect
    p: float  # two-sided exact McNemar p


def paired_shares(a: Correctness, b: Correctness, *, level: float = 0.95) -> PairedShares:
    """The difference of two shares observed on the same units: exact McNemar's p
    (``binomtest`` on the discordant units) and Newcombe's square-and-add interval (his method
    10, 1998: the Wilson intervals of ``scipy.stats.binomtest`` for each share, joined with
    his continuity-corrected estimate of their correlation). The joining is hand-written:
    neither scipy nor statsmodels has an interval for a paired difference of proportions.
    """
    x, y = _correctness(a, b)
    n = len(x)
    both, only_a, only_b = int((x & y).sum()), int((x & ~y).sum()), int((~x & y).sum())
    neither = n - both - only_a - only_b
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    (l1, u1), (l2, u2) = (
        stats.binomtest(k, n).proportion_ci(level, method="wilson")
        for k in (both + only_a, both + only_b)
    )
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    cross = both * neither - only_a * only_b
    corrected = cross - n / 2 if cross > n / 2 else min(cross, 0)
    phi = corrected / math.sqrt(margins) if margins else 0.0
    effect = p1 - p2
    below = (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2
    above = (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2
    ci = (effect - math.sqrt(below), effect + math.sqrt(above))
    return PairedShares(n, p1, p2, effect, only_a, only_b, ci, _mcnemar_p(only_a, only_b))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order (monotone, capped at 1).

    Hand-written (scipy has no Holm): the i-th smallest of m p-values becomes
    ``max over j <= i of min(1, (m - j + 1) * p_(j))``, with j counted from 1.
    """
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1 or ((p < 0) | (p > 1) | np.isnan(p)).any():
        raise ValueError("p-values must be a flat sequence of numbers in [0, 1]")
    order = np.argsort(p, kind="stable")
    scaled = (len(p) - np.arange(len(p))) * p[order]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted.tolist()


POOL_ABOVE = 0.25  # the seeds' F-test p at or above which the seed term is pooled


@dataclass(frozen=True)
class Contrast:
    """A combination of error rates of arms tested on the same images by the same seeds."""

    seeds: int
    images: int
    effect: float  # points
    ci: tuple[float, float]  # 95% t interval: over images, or seeds and images (``over``)
    p: float  # two-sided, of the same t (exact McNemar for two single-seed arms)
    seeds_differ: float  # p of the F test that the effect differs between seeds (NaN: 1 seed)
    over: str  # "images" or "seeds and images": the variation the interval covers
    se: float  # the effect's standard error, points
    df: float  # its degrees of freedom (Satterthwaite's where seeds enter)
    mde: float  # the effect this test detects with 80% power, points
    mean_squares: tuple[float, float, float]  # seeds, images, residual (``mean_squares``)


def mean_squares(y: np.ndarray) -> tuple[float, float, float]:
    """Seed, image and residual (seed-by-image) mean squares of a (seeds, images) table, as
    in a two-way analysis of variance without replication; seed and residual are NaN for one
    seed. Hand-written: scipy has no such analysis, and statsmodels' needs a dummy column per
    image."""
    k, n = y.shape
    seed_means, image_means = y.mean(1), y.mean(0)
    ms_images = k * float(image_means.var(ddof=1))
    if k < 2:
        return float("nan"), ms_images, float("nan")
    residual = y - seed_means[:, None] - image_means[None, :] + y.mean()
    ms_residual = float((residual**2).sum()) / ((k - 1) * (n - 1))
    return n * float(seed_means.var(ddof=1)), ms_images, ms_residual


def seed_heterogeneity(y: np.ndarray) -> float:
    """p that a (seeds, images) table of per-image effects has the same mean in every seed:
    the F test of its seed mean square against its residual mean square. NaN for one seed."""
    k, n = y.shape
    if k < 2:
        return float("nan")
    ms_seeds, _, ms_residual = mean_squares(y)
    if ms_residual == 0:
        return 1.0 if ms_seeds == 0 else 0.0
    return float(stats.f.sf(ms_seeds / ms_residual, k - 1, (k - 1) * (n - 1)))


def effects(terms: Sequence[tuple[float, np.ndarray]]) -> np.ndarray:
    """(seeds, images): each image's effect ``sum(c * error)`` in points, seed by seed, from
    (coefficient, (seeds, images) correctness) terms paired by seed and image."""
    arrays = [np.atleast_2d(np.asarray(c, dtype=bool)) for _, c in terms]
    if len({a.shape for a in arrays}) != 1:
        raise ValueError(f"arms must share (seeds, images), got {[a.shape for a in arrays]}")
    return 100 * sum(
        coef * (~a).astype(np.float64) for (coef, _), a in zip(terms, arrays, strict=True)
    )


def contrast(
    terms: Sequence[tuple[float, np.ndarray]],
    *,
    level: float = 0.95,
    pool_above: float = POOL_ABOVE,
) -> Contrast:
    """``sum(c * error(arm))`` in points, each arm a (seeds, images) correctness array whose
    rows are paired by seed and columns by image across arms; ``(1, a), (-1, b)`` gives
    ``error_a - error_b``.

    Seeds and test images are crossed random factors. Where the seeds' F test
    (``seed_heterogeneity``) is at or above ``pool_above`` (a liberal preliminary test, after
    Bozivich, Bancroft & Hartley 1956), the seed term is pooled into the residual: the t test
    over images of each image's effect averaged over the seeds, whose variance ``MS_images /
    (k n)`` narrows as seeds are added. Below it, training variation enters: variance
    ``(MS_seeds + MS_images - MS_residual) / (k n)`` with Satterthwaite's degrees of freedom.
    Two single-seed arms take exact McNemar's p. Until 2026-11-30 this was the pigeonhole
    bootstrap (seeds and images resampled), which counts the seed-by-image interaction three
    times (Owen 2007).
    """
    arrays = [np.atleast_2d(np.asarray(c, dtype=bool)) for _, c in terms]
    y = effects(terms)
    k, n = y.shape
    effect = float(y.mean())
    ms = mean_squares(y)
    differ = seed_heterogeneity(y)
    with_seeds = k > 1 and differ < pool_above and ms[0] > ms[2]  # a seed component, seen
    se, df = _standard_error(ms, k, n, with_seeds)
    t = stats.t(df)
    q = t.ppf(0.5 + level / 2)
    if se == 0:
        p = 1.0 if effect == 0 else 0.0
    elif k == 1 and len(terms) == 2 and [c for c, _ in terms] == [1, -1]:
        p = mcnemar(arrays[0][0], arrays[1][0], resamples=100).p
    else:
        p = float(2 * t.sf(abs(effect) / se))
    ci = (effect - q * se, effect + q * se)
    over = "seeds and images" if with_seeds else "images"
    return Contrast(k, n, effect, ci, p, differ, over, se, df, _mde(se, df, level), ms)


def _standard_error(
    ms: tuple[float, float, float], k: int, n: int, with_seeds: bool
) -> tuple[float, float]:
    """The standard error of the mean effect of k seeds by n images and its degrees of
    freedom, from the mean squares: ``MS_images`` alone (the seed term pooled), or
    ``MS_seeds + MS_images - MS_residual`` with Satterthwaite's degrees of freedom."""
    parts, dfs = np.array(ms[1:2]), np.array([n - 1])
    if with_seeds:
        parts = np.array([ms[0], ms[1], -ms[2]])
        dfs = np.array([k - 1, n - 1, (k - 1) * (n - 1)])
    variance = float(parts.sum()) / (k * n)
    if variance <= 0:
        return 0.0, float(n - 1)
    return variance**0.5, float(parts.sum() ** 2 / (parts**2 / dfs).sum())


def _mde(se: float, df: float, level: float) -> float:
    """The effect a two-sided t test of this standard error detects with 80% power."""
    t = stats.t(df)
    return float((t.ppf(0.5 + level / 2) + t.ppf(0.8)) * se)


def se_with(c: Contrast, seeds: int) -> tuple[float, float]:
    """The standard error and degrees of freedom ``c``'s test would have on ``seeds`` seeds:
    the expected mean squares of the crossed model with the variance components estimated
    from its own seeds (NaN from one seed, where images and the seed-by-image interaction
    cannot be told apart)."""
    if c.seeds < 2:
        return float("nan"), float("nan")
    ms_seeds, ms_images, ms_residual = c.mean_squares
    seed_var = max(ms_seeds - ms_residual, 0.0) / c.images  # of the seeds' mean effects
    image_var = max(ms_images - ms_residual, 0.0) / c.seeds  # of the images' mean effects
    expected = (ms_residual + c.images * seed_var, ms_residual + seeds * image_var, ms_residual)
    return _standard_error(expected, seeds, c.images, c.over != "images")


def mde_with(c: Contrast, seeds: int, *, level: float = 0.95) -> float:
    """The mde ``c`` would have on ``seeds`` seeds (``se_with``; NaN from one seed)."""
    if c.seeds < 2:
        return float("nan")
    return _mde(*se_with(c, seeds), level)


def seeds_for(c: Contrast, effect: float, *, level: float = 0.95, most: int = 1000) -> float:
    """The fewest seeds on which ``c``'s mde (``mde_with``) is at most ``effect``: what the
    test needs to detect it. NaN from one seed; inf past ``most`` seeds."""
    if c.seeds < 2 or not effect > 0:
        return float("nan")
    if mde_with(c, most, level=level) > effect:
        return float("inf")
    low, high = 0, most  # mde_with(c, low) > effect >= mde_with(c, high), zero seeds: inf
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if mde_with(c, middle, level=level) > effect else (low, middle)
    return float(high)
