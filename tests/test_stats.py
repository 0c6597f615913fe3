import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

from vggbook import stats


def pairs(both: int, only_a: int, only_b: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Correctness vectors with exactly these counts of (A right, B right) images."""
    a = [True] * both + [True] * only_a + [False] * only_b + [False] * neither
    b = [True] * both + [False] * only_a + [True] * only_b + [False] * neither
    return np.array(a), np.array(b)


def test_mcnemar_known_example():
    a, b = pairs(both=5, only_a=10, only_b=2, neither=3)
    c = stats.mcnemar(a, b, resamples=200)
    assert (c.n, c.only_a, c.only_b) == (20, 10, 2)
    assert c.error_a == pytest.approx(25.0) and c.error_b == pytest.approx(65.0)
    assert c.effect == pytest.approx(-40.0)  # A is better
    by_hand = 2 * sum(math.comb(12, k) for k in range(3)) / 2**12  # = 158 / 4096
    assert c.p == pytest.approx(by_hand) and c.p == pytest.approx(0.03857421875)
    assert c.ci[0] <= c.effect <= c.ci[1] < 0


def test_mcnemar_without_discordant_images():
    a, b = pairs(both=7, only_a=0, only_b=0, neither=3)
    c = stats.mcnemar(a, b, resamples=200)
    assert (c.effect, c.p, c.ci) == (0.0, 1.0, (0.0, 0.0))


def test_swapping_classifiers_flips_the_effect():
    a, b = pairs(both=300, only_a=40, only_b=65, neither=95)
    ab, ba = stats.mcnemar(a, b, resamples=500), stats.mcnemar(b, a, resamples=500)
    assert ab.effect == pytest.approx(5.0) and ba.effect == pytest.approx(-5.0)
    assert (ab.only_a, ab.only_b) == (ba.only_b, ba.only_a)
    assert ab.p == pytest.approx(ba.p) and ab.p < 0.05
    assert ab.ci == pytest.approx((-ba.ci[1], -ba.ci[0]))


def test_torch_tensors_match_arrays():
    a, b = pairs(both=30, only_a=4, only_b=9, neither=7)
    from_torch = stats.mcnemar(torch.from_numpy(a), torch.from_numpy(b), resamples=200)
    assert from_torch == stats.mcnemar(a, b, resamples=200)


def test_bootstrap_covers_the_difference_with_the_paired_width():
    n, only_a, only_b = 2000, 100, 160  # true effect (160 - 100) / 2000 = 3 points
    a, b = pairs(both=1500, only_a=only_a, only_b=only_b, neither=240)
    lo, hi = stats.paired_bootstrap(a, b, resamples=2000)
    assert 0 < lo < 3.0 < hi
    # the paired standard error of the difference of proportions
    se = math.sqrt((only_a + only_b) / n - ((only_b - only_a) / n) ** 2) / math.sqrt(n)
    assert hi - lo == pytest.approx(2 * 1.959964 * 100 * se, rel=0.1)


def test_bootstrap_coverage_over_repeated_samples():
    rng = np.random.default_rng(7)
    true_effect, covered = 2.0, 0
    for trial in range(40):
        u = rng.random(400)
        a = u >= 0.06  # A is wrong on 6% of the images...
        b = (u < 0.06) | (u >= 0.14)  # ...B on a disjoint 8%: error_a - error_b = -2 points
        lo, hi = stats.paired_bootstrap(b, a, resamples=400, seed=trial)
        covered += lo <= true_effect <= hi
    assert covered >= 34  # nominal 95% of 40 trials is 38


def test_bootstrap_is_deterministic_under_its_seed():
    rng = np.random.default_rng(3)
    a, b = rng.random(500) < 0.7, rng.random(500) < 0.75
    first = stats.paired_bootstrap(a, b, resamples=500, seed=11)
    assert stats.paired_bootstrap(a, b, resamples=500, seed=11) == first
    assert stats.paired_bootstrap(a, b, resamples=500, seed=12) != first


def test_seed_level_matches_the_paired_t_by_hand():
    a, b = [7.1, 7.3, 7.0], [6.8, 7.0, 6.9]
    s = stats.seed_level(a, b)
    d = np.subtract(a, b)
    se = d.std(ddof=1) / math.sqrt(3)
    t_crit = sps.t.ppf(0.975, df=2)
    assert s.n == 3 and s.effect == pytest.approx(d.mean()) and s.effect > 0
    assert s.ci == pytest.approx((d.mean() - t_crit * se, d.mean() + t_crit * se))
    assert s.p == pytest.approx(2 * sps.t.sf(d.mean() / se, df=2))
    swapped = stats.seed_level(b, a)
    assert swapped.effect == pytest.approx(-s.effect) and swapped.p == pytest.approx(s.p)


def test_bounded_paired_takes_each_end_from_its_own_bounds():
    exact = [0.2, 0.5, 0.3, 0.6]
    t = sps.ttest_1samp(exact, 0.0)
    both = stats.bounded_paired(exact, exact)  # no censoring: the plain t interval and p
    assert both.ci == pytest.approx(tuple(t.confidence_interval(0.95)))
    assert both.p == pytest.approx(t.pvalue) and both.effect == pytest.approx(np.mean(exact))
    at_least = stats.bounded_paired(exact, [math.inf] * 4)  # the comparison's baseline censored
    assert at_least.ci[0] == pytest.approx(both.ci[0]) and at_least.ci[1] == math.inf
    assert at_least.p == pytest.approx(t.pvalue) and at_least.effect == pytest.approx(0.4)
    at_most = stats.bounded_paired([-math.inf] * 4, [-x for x in exact])  # the other censored
    assert at_most.ci[0] == -math.inf and at_most.ci[1] == pytest.approx(-both.ci[0])
    assert at_most.p == pytest.approx(t.pvalue) and at_most.effect == pytest.approx(-0.4)


def test_bounded_paired_knows_nothing_where_both_times_are_censored():
    some = stats.bounded_paired([0.3, -math.inf, 0.4], [math.inf] * 3)
    assert some.ci == (-math.inf, math.inf) and some.p == 1.0 and math.isnan(some.effect)
    alike = stats.bounded_paired([0.7] * 3, [math.inf] * 3)  # no spread: the end is exact
    assert alike.ci == (0.7, math.inf) and alike.p == 0.0
    one = stats.bounded_paired([0.7], [math.inf])  # one seed: no interval, whatever its bound
    assert one.ci == (-math.inf, math.inf) and one.p == 1.0 and one.effect == 0.7
    assert math.isnan(stats.bounded_paired([], []).effect)
    with pytest.raises(ValueError, match="lower <= upper"):
        stats.bounded_paired([0.5, 0.1], [0.4, 0.2])


def test_holm_worked_example():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> monotone 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # 1.2 capped, 0.7 raised
    assert stats.holm([0.02]) == pytest.approx([0.02])
    assert stats.holm([]) == []


def test_paired_shares_published_example():
    # Fagerland, Lydersen & Laake (2017), ch. 8: complete response before and after
    # consolidation therapy (Cavo et al. 2012), Newcombe's square-and-add interval
    c = stats.paired_shares(*pairs(both=59, only_a=6, only_b=16, neither=80))
    assert (c.n, c.only_a, c.only_b) == (161, 6, 16)
    assert c.effect == pytest.approx(-0.0621, abs=5e-5)
    assert c.ci == pytest.approx((-0.1186, -0.0046), abs=5e-5)
    assert c.p == pytest.approx(sps.binomtest(6, 22).pvalue)
    swapped = stats.paired_shares(*pairs(both=59, only_a=16, only_b=6, neither=80))
    assert swapped.ci == pytest.approx((-c.ci[1], -c.ci[0]))


def test_paired_shares_interval_covers_by_exact_enumeration():
    """On ten units, every table weighted by its multinomial probability: the interval covers
    the true difference at least 93% of the time wherever it was computed (Newcombe reports
    coverage near 95% with few dips below), and not as a constant answer would."""
    n = 10
    tables = [(a, b, c, n - a - b - c) for a in range(n + 1) for b in range(n + 1 - a)
              for c in range(n + 1 - a - b)]  # fmt: skip
    cis = {t: stats.paired_shares(*pairs(*t)).ci for t in tables}
    for both, only_a, only_b in [(0, 4, 0), (0, 3, 1), (2, 5, 1), (5, 3, 0), (1, 1, 2)]:
        probs = np.array([both, only_a, only_b, 10 - both - only_a - only_b]) / 10
        truth = probs[1] - probs[2]
        covered = sum(sps.multinomial.pmf(t, n, probs) for t in tables
                      if cis[t][0] <= truth <= cis[t][1])  # fmt: skip
        assert 0.93 <= covered < 1.0, (both, only_a, only_b, covered)
    assert all(-1 <= lo <= (t[1] - t[2]) / n <= hi <= 1 for t, (lo, hi) in cis.items())


def simulated_power(n: int, psi: float, effect: float, trials: int, seed: int) -> float:
    """Share of simulated test sets on which the exact McNemar test rejects at 5%."""
    rng = np.random.default_rng(seed)
    discordant = rng.binomial(n, psi, size=trials)
    only_b = rng.binomial(discordant, (psi + effect / 100) / (2 * psi))
    counts = zip(discordant, only_b, strict=True)
    rejected = [sps.binomtest(int(d - c), int(d), 0.5).pvalue < 0.05 for d, c in counts]
    return float(np.mean(rejected))


def test_contrast_mde_has_the_power_by_simulation():
    n, psi = 5000, 0.1
    a, b = pairs(both=4000, only_a=250, only_b=250, neither=500)  # 10% discordant, no effect
    mde = stats.contrast([(1, a), (-1, b)]).mde
    assert simulated_power(n, psi, mde, trials=400, seed=0) == pytest.approx(0.8, abs=0.06)
    assert simulated_power(n, psi, mde / 2, trials=400, seed=1) < 0.5


def test_unequal_lengths_are_rejected():
    with pytest.raises(ValueError, match="lengths differ: 3 vs 2") as info:
        stats.mcnemar([True, False, True], [True, False])
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="equal length"):
        stats.seed_level([1.0, 2.0], [1.0])


@pytest.mark.parametrize(
    "call",
    [
        lambda: stats.paired_bootstrap([], []),
        lambda: stats.paired_bootstrap([[True]], [[True]]),
        lambda: stats.mcnemar([0, 2], [1, 1]),
        lambda: stats.seed_level([1.0], [2.0]),
        lambda: stats.holm([0.5, 1.5]),
        lambda: stats.paired_shares([True], [True, False]),
        lambda: stats.contrast([(1, [[True, False]]), (-1, [[True]])]),
    ],
)
def test_invalid_inputs_are_rejected(call):
    with pytest.raises(ValueError) as info:
        call()
    assert "\n" not in str(info.value)
