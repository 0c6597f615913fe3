import pytest

from vggbook import timing


def fake_clock(durations):
    """A clock whose successive start/stop readings are ``durations`` seconds apart."""
    ticks = iter([t for d in durations for t in (0.0, d)])
    return lambda: next(ticks)


def counting(items):
    calls = []
    return calls, lambda: calls.append(1) or items


def test_best_rate_is_the_fastest_repeat_s_rate():
    calls, run = counting(100)
    rate = timing.best_rate(run, 4, 0.0, fake_clock([2.0, 0.5, 4.0, 1.0]))
    assert len(calls) == 4
    assert rate == 200.0  # 100 items in the 0.5 s repeat, not the mean (~53) nor the first (50)


def test_best_rate_repeats_until_the_minimum_time_has_passed():
    calls, run = counting(10)
    rate = timing.best_rate(run, 2, 1.0, fake_clock([0.3, 0.3, 0.3, 0.05, 0.3, 9.0]))
    assert len(calls) == 5  # 2 repeats take 0.6 s; the fifth brings the total past 1 s
    assert rate == 200.0  # the fourth, after the two asked for


def test_best_rate_needs_a_repeat():
    with pytest.raises(ValueError, match="at least 1"):
        timing.best_rate(lambda: 1, 0)
