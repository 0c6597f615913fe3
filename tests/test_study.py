"""The study's records, their statistics, and the witness that ties them to this code."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

from vggbook import data, findings, runs, stats, study
from vggbook.models import LRN, LocalResponseNorm, build_vgg, layer_names
from vggbook.provenance import is_default

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "study" / "records"
MANIFEST = json.loads((ROOT / "study" / "manifest.json").read_text())
SMOKE = dict(epochs=1, limit_train=256, val_images=128, batch_size=64)


def test_the_witness_run_retrains_bit_for_bit():
    """The first epoch of the witness run, retrained here in fp32 on the CPU, gives the weights
    whose checksum the manifest holds: the stored records come from this training code."""
    recorded = MANIFEST["witness"]
    again = study.witness(ROOT / "study")
    assert again["run"] == recorded["run"]
    # the same network learnt the same thing as the stored run (trained in bf16 on a GPU)
    stored = study.load_record(RECORDS, recorded["run"])["metrics"][0]["val_top1"]
    assert abs(again["val_top1"] - stored) < 3.0, (again["val_top1"], stored)
    if again["cpu"] != recorded["cpu"]:
        pytest.skip(f"bits are compared on the CPU that made them: {recorded['cpu']}")
    assert again["checksum"] == recorded["checksum"], "stale study: run `make study`"


def test_every_designed_run_with_a_record_is_complete():
    names = {r.name: r for r in study.study_runs()}
    recorded = [p.name for p in RECORDS.iterdir()]
    assert recorded and set(recorded) <= set(names)
    for name in recorded:
        rec = study.load_record(RECORDS, name)
        assert rec["config"]["run"]["profile"]["name"] == "study"
        for protocol in names[name].protocols:
            assert rec["evaluation"][protocol]["images"] == len(rec["labels"]) == 10_000
            assert rec["top5"][protocol].shape == (10_000, 5)
        text = json.dumps(rec["config"])
        assert not re.search(r'"(transfer:)?/(work|home|root|tmp)/', text), name  # no machine paths


def test_a_record_round_trips(tmp_path):
    names = study.run_study(tmp_path, only=["A-seed0"], progress=False, **SMOKE)
    assert names == ["A-seed0"]
    rec = study.load_record(tmp_path / "records", "A-seed0")
    error = 100 * (1 - study.correct(rec).mean())
    assert error == pytest.approx(rec["evaluation"]["single"]["top1_error"])
    assert study.run_study(tmp_path, only=["A-seed0"], progress=False, **SMOKE) == []  # kept
    with pytest.raises(runs.RunDirError, match="make study"):
        study.load_record(tmp_path / "records", "B-seed0")


def test_the_manifest_changes_only_with_its_witness(tmp_path, monkeypatch):
    study.write_manifest(tmp_path, {"checksum": "abc"})
    first = (tmp_path / "manifest.json").read_bytes()
    monkeypatch.setattr(study.provenance, "environment", lambda: {"git_commit": "other"})
    study.write_manifest(tmp_path)  # what every `python -m vggbook study` does after its runs
    assert (tmp_path / "manifest.json").read_bytes() == first
    manifest = study.write_manifest(tmp_path, {"checksum": "def"})
    assert manifest["written_by"] == {"git_commit": "other"}
    assert manifest["witness"] == {"checksum": "def"}


def test_steps_to_leave_chance():
    metrics = [{"loss_every_10_steps": [2.3, 2.31, 2.1]}, {"loss_every_10_steps": [2.2, 1.2]}]
    assert study.steps_to_leave_chance(metrics, 2.0, 25) == (25 + 20, True)
    assert study.steps_to_leave_chance(metrics[:1], 2.0, 25) == (25, False)  # censored
    assert study.steps_to_leave_chance([{"loss_every_10_steps": [2.3, 1.0]}], 2.0, 14) == (14, True)


def test_validation_is_held_out_of_the_training_split():
    train = data.load_dataset("fashion-mnist", "train")
    kept, held = data.holdout(train)
    assert len(held) == 5_000 and len(kept) == 55_000
    assert not set(kept.indices) & set(held.indices)
    assert torch.bincount(data.targets(held)).tolist() == [500] * 10
    assert data.holdout(train)[1].indices == held.indices  # the same for every run
    with pytest.raises(ValueError, match="choose train or test"):
        data.load_dataset("fashion-mnist", "val")


def test_contrast_is_a_paired_difference():
    rng = np.random.default_rng(0)
    a = rng.random(4000) < 0.9
    b = a.copy()
    b[:200] = True  # B right on 200 more images at most
    c = stats.contrast([(1, a), (-1, b)])
    m = stats.mcnemar(a, b, resamples=200)
    assert c.effect == pytest.approx(m.effect) and c.p == pytest.approx(m.p)
    assert c.ci[0] > 0 and c.seeds == 1 and c.images == 4000 and c.over == "images"
    two = stats.contrast([(1, np.stack([a, a])), (-1, np.stack([b, a]))])
    assert two.effect == pytest.approx(m.effect / 2) and two.ci[0] < c.ci[0]
    assert math.isnan(c.seeds_differ) and two.seeds_differ < 1e-3  # a gain, then none
    assert two.over == "seeds and images" and two.df < 2  # the seeds' one degree of freedom
    same = stats.contrast([(1, np.stack([a, a])), (-1, np.stack([b, b]))])
    assert same.seeds_differ == 1.0 and same.over == "images"
    assert same.ci == pytest.approx(c.ci, abs=1e-9)  # one net trained twice alike: one seed


def arms(rng, k: int, n: int, shift: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Two arms' (k, n) correctness: images of varied difficulty, a fresh draw per seed, and
    arm B's accuracy moved by ``shift`` (per seed)."""
    p = rng.uniform(0.6, 1.0, size=n)
    a = rng.random((k, n)) < p
    b = rng.random((k, n)) < np.clip(p + np.reshape(shift, (-1, 1)), 0, 1)
    return a, b


def test_contrast_pools_agreeing_seeds_into_a_t_over_images():
    rng = np.random.default_rng(2)
    a, b = arms(rng, 4, 3000)
    c = stats.contrast([(1, a), (-1, b)])
    assert c.seeds_differ >= stats.POOL_ABOVE and c.over == "images"
    per_image = 100 * ((~a).astype(float) - (~b)).mean(0)
    res = scipy.stats.ttest_1samp(per_image, 0.0)
    assert c.ci == pytest.approx(tuple(res.confidence_interval(0.95)), rel=1e-9)
    assert c.p == pytest.approx(res.pvalue, rel=1e-9)
    one = stats.contrast([(1, a[:1]), (-1, b[:1])])
    width = (c.ci[1] - c.ci[0]) / (one.ci[1] - one.ci[0])
    assert 0.4 < width < 0.65  # four seeds of mostly seed-by-image noise: about 1/sqrt(4)
    assert stats.mde_with(c, 4) == pytest.approx(c.mde, rel=1e-9)  # its own seeds
    assert stats.se_with(c, 4) == pytest.approx((c.se, c.df), rel=1e-9)
    assert 0.4 < stats.mde_with(c, 16) / c.mde < 0.6  # four times the seeds: about half
    assert math.isnan(stats.mde_with(one, 4))  # one seed: interaction and images inseparable


def test_seeds_for_is_the_fewest_seeds_whose_mde_reaches_the_effect():
    rng = np.random.default_rng(2)
    a, b = arms(rng, 4, 3000)
    c = stats.contrast([(1, a), (-1, b)])
    k = stats.seeds_for(c, c.mde / 2)
    assert stats.mde_with(c, int(k)) <= c.mde / 2 < stats.mde_with(c, int(k) - 1)
    assert 13 <= k <= 20  # half the mde: about four times the seeds
    assert stats.seeds_for(c, c.mde * (1 + 1e-9)) == 4  # its own seeds
    assert stats.seeds_for(c, 100.0) == 1
    assert stats.seeds_for(c, 1e-3) == math.inf  # past a thousand seeds
    assert math.isnan(stats.seeds_for(stats.contrast([(1, a[:1]), (-1, b[:1])]), 1.0))


def test_contrast_counts_the_seeds_when_they_differ():
    rng = np.random.default_rng(3)
    k, n = 4, 3000
    a, b = arms(rng, k, n, shift=np.array([-0.04, 0.0, 0.03, 0.06]))
    c = stats.contrast([(1, a), (-1, b)])
    assert c.seeds_differ < stats.POOL_ABOVE and c.over == "seeds and images"
    y = 100 * ((~a).astype(float) - (~b))
    seed_ss = n * ((y.mean(1) - y.mean()) ** 2).sum()
    image_ss = k * ((y.mean(0) - y.mean()) ** 2).sum()
    residual_ss = ((y - y.mean()) ** 2).sum() - seed_ss - image_ss
    ms = np.array([seed_ss / (k - 1), image_ss / (n - 1), residual_ss / ((k - 1) * (n - 1))])
    dfs = np.array([k - 1, n - 1, (k - 1) * (n - 1)])
    combined = ms @ [1, 1, -1]
    assert c.se == pytest.approx(math.sqrt(combined / (k * n)), rel=1e-9)
    assert c.df == pytest.approx(combined**2 / (ms**2 / dfs).sum(), rel=1e-9)
    assert k - 1.5 < c.df < k  # the seeds' few degrees of freedom dominate
    pooled = scipy.stats.ttest_1samp(y.mean(0), 0.0).confidence_interval(0.95)
    assert c.ci[1] - c.ci[0] > 3 * (pooled.high - pooled.low)
    assert ms[1] < ms[2]  # no image component seen: truncated at zero in the projection
    assert stats.mde_with(c, 4) == pytest.approx(c.mde, rel=0.01)
    assert stats.mde_with(c, 16) < c.mde / 2  # a quarter of the variance, and more df


@pytest.mark.parametrize("spread", [0.0, 0.02])
def test_contrast_interval_covers_the_effect_95_percent_of_the_time(spread):
    rng = np.random.default_rng(4)
    covered = []
    for _ in range(300):  # five seeds whose B is better or worse by chance; no true effect
        a, b = arms(rng, 5, 1000, shift=rng.normal(0, spread, size=5))
        lo, hi = stats.contrast([(1, a), (-1, b)]).ci
        covered.append(lo <= 0 <= hi)
    assert 0.91 <= np.mean(covered) <= 0.99


def test_seed_heterogeneity_is_the_two_way_anova_f_test():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(3, 400)) + np.array([[0.0], [0.1], [0.3]])
    k, n = y.shape
    seed_ss = n * ((y.mean(1) - y.mean()) ** 2).sum()
    image_ss = k * ((y.mean(0) - y.mean()) ** 2).sum()
    residual_ss = ((y - y.mean()) ** 2).sum() - seed_ss - image_ss
    f = (seed_ss / (k - 1)) / (residual_ss / ((k - 1) * (n - 1)))
    expected = scipy.stats.f.sf(f, k - 1, (k - 1) * (n - 1))
    assert stats.seed_heterogeneity(y) == pytest.approx(expected, rel=1e-9)
    assert expected < 0.01  # seeds 0.3 apart over 400 images of unit noise
    assert stats.seed_heterogeneity(y - y.mean(1, keepdims=True)) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kind, effect, ci, p_holm, expected",
    [
        ("gain", 0.8, (0.2, 1.4), 0.01, "reproduced"),
        ("gain", -0.8, (-1.4, -0.2), 0.01, "contradicted"),
        ("gain", 0.1, (-0.2, 0.4), 0.5, "smaller than the paper's"),
        ("gain", 0.4, (-0.2, 1.0), 0.5, "inconclusive"),
        ("gain", 0.5, (0.05, 0.95), 0.2, "inconclusive"),  # excludes 0, not after Holm
        ("no gain", 0.0, (-0.2, 0.2), 0.9, "reproduced"),
        ("no gain", 0.9, (0.5, 1.3), 0.001, "contradicted"),
        ("no gain", 0.2, (-0.2, 0.6), 0.4, "inconclusive"),
    ],
)
def test_decision_rule(kind, effect, ci, p_holm, expected):
    row = {"kind": kind, "effect": effect, "ci": ci, "paper gain here": 0.5, "margin": 0.3}
    assert findings.decide(row, p_holm) == expected


def test_every_finding_has_arms_in_the_design():
    designed = {r.name for r in study.study_runs()}
    keys = [f.key for f in findings.FINDINGS]
    assert len(set(keys)) == len(keys)
    for f in findings.FINDINGS:
        assert f.kind in ("gain", "no gain")
        for _, arm in f.arms:
            for config in filter(None, [arm.config, arm.fused_with]):
                assert arm.run(config, 0) in designed
    assert findings.NO_GAIN_MARGIN == pytest.approx(0.9 / 29.6)


def _assert_annealed_runs(f: findings.Finding, designed: dict) -> None:
    """Every run of a finding's design is designed, annealed and tested by its arm's protocol."""
    for seed in f.design_seeds:
        for _, arm in f.arms:
            for config in filter(None, [arm.config, arm.fused_with]):
                run = designed[arm.run(config, seed)]
                assert run.profile().lr_steps == study.ANNEALED_STEPS
                assert arm.protocol in run.protocols


def test_design_2_replaces_the_depth_rows_only_when_all_its_seeds_are_recorded():
    designed = {r.name: r for r in study.study_runs()}
    assert [f.key for f in findings.ANNEALED] == ["2a", "2b", "2c", "3", "8a", "8b"]
    for f in findings.ANNEALED:
        assert f.design_seeds == study.ANNEALED_SEEDS
        _assert_annealed_runs(f, designed)
    assert designed["C-annealed-seed0"].protocols == ("single",)  # only what a row compares
    assert "multiscale" not in designed["E-annealed-seed0"].protocols
    assert study.StudyRun("B", 0).profile().lr_steps == ()  # design 1: plateaus
    fresh = {s for seeds in study.FRESH_SEEDS.values() for s in seeds}
    records = {n: None for n, r in designed.items() if r.seed not in fresh}  # names are read
    on_2 = {f.key for f in findings.current(records) if f in findings.ANNEALED}
    assert on_2 == {f.key for f in findings.ANNEALED}
    one_missing = {n: r for n, r in records.items() if n != "E-annealed-seed7"}
    on_2 = {f.key for f in findings.current(one_missing) if f in findings.ANNEALED}
    assert on_2 == {"2a", "2b", "3"}  # 2c, 8a and 8b need E's seed 7
    assert findings.current({}) == findings.FINDINGS


def test_design_3_moves_a_row_only_when_all_its_fresh_seeds_are_recorded():
    designed = {r.name: r for r in study.study_runs()}
    assert [f.key for f in findings.DESIGN_3] == ["2a", "3", "8a", "8b"]
    used = set(study.SEEDS + study.ANNEALED_SEEDS + study.INIT_SEEDS + study.RESCUE_SEEDS)
    for f in findings.DESIGN_3:
        assert f.design_seeds and not used & set(f.design_seeds)  # fresh seeds
        two = next(g for g in findings.ANNEALED if g.key == f.key)
        assert f.arms == two.arms and f.paper == two.paper and f.kind == two.kind
        _assert_annealed_runs(f, designed)
    seeds = {f.key: f.design_seeds for f in findings.DESIGN_3}
    assert seeds["8a"] == seeds["8b"] == study.FRESH_SEEDS["E"]  # rows sharing nets share seeds
    assert seeds["2a"] == study.FRESH_SEEDS["A"] and seeds["3"] == study.FRESH_SEEDS["C"]

    def designs(records):
        return {f.key: f.design for f in findings.current(records) if f.design > 1}

    records = dict.fromkeys(designed)  # only the names are read
    assert designs(records) == {"2a": 3, "2b": 2, "2c": 2, "3": 3, "8a": 3, "8b": 3}
    last_e = f"E-annealed-seed{study.FRESH_SEEDS['E'][-1]}"
    del records[last_e]
    assert designs(records) == {"2a": 3, "2b": 2, "2c": 2, "3": 3, "8a": 2, "8b": 2}
    del records[f"C-annealed-seed{study.FRESH_SEEDS['C'][-1]}"]
    assert designs(records)["3"] == 2
    records = {n: r for n, r in dict.fromkeys(designed).items() if n != last_e}
    records |= {"E-annealed-seed99": None}  # a seed outside the design completes nothing
    assert designs(records)["8b"] == 2


def test_design_3_is_sized_by_design_2_s_variance_components_at_holm_s_level():
    needs = {"2a": 3.0, "3": 5.0, "8a": 2.0, "8b": 4.0}
    assert findings.design_3_sizes(needs) == {"A": 3, "B": 3, "C": 5, "D": 5, "E": 4}
    names = [f"{c}-annealed-seed{s}" for c in "ABCDE" for s in study.ANNEALED_SEEDS]
    records = {name: study.load_record(RECORDS, name) for name in names}
    needs = findings.design_3_needs(records)
    assert findings.design_3_sizes(needs) == study.DESIGN_3_SIZES  # the design is its calculation
    for f in findings.ANNEALED:
        if f.key in needs:  # Holm asks for more seeds than a test at ALPHA alone
            assert needs[f.key] > findings.test(f, records)["seeds for the paper's effect"]
    for key, chances in findings.design_3_outcomes(records).items():  # the text's promise
        assert chances[1.0]["reproduced"] > 0.79, key  # 80% power, to 1/20,000
        assert chances[0.0]["smaller than the paper's"] > 0.94, key
        assert chances[0.5].get("inconclusive", 0.0) < 0.41, key


def test_outcome_chances_are_the_t_test_s_power_and_its_interval_s_coverage():
    holm, df = 8, 1e6  # a normal test, compared at ALPHA / 8
    z = scipy.stats.norm.ppf(1 - findings.ALPHA / (2 * holm)) + scipy.stats.norm.ppf(0.8)
    row = {"kind": "gain", "paper gain here": 1.0, "margin": None}
    se = 1.0 / z  # the paper's effect is the mde
    at_paper = findings.outcome_chances(row, se, df, 1.0, holm=holm)
    assert at_paper["reproduced"] == pytest.approx(0.8, abs=1e-3)
    assert at_paper["smaller than the paper's"] == pytest.approx(0.025, abs=1e-3)  # 95% interval
    at_zero = findings.outcome_chances(row, se, df, 0.0, holm=holm)
    assert at_zero["contradicted"] == pytest.approx(findings.ALPHA / (2 * holm), abs=2e-4)
    below = scipy.stats.norm.cdf(1.0 / se - scipy.stats.norm.ppf(1 - findings.ALPHA / 2))
    assert at_zero["smaller than the paper's"] == pytest.approx(below - at_zero["contradicted"],
                                                              abs=1e-3)  # fmt: skip
    assert sum(at_zero.values()) == pytest.approx(1.0)
    few = findings.outcome_chances(row, se, 3.0, 1.0, holm=holm)  # heavy tails: less power
    t3 = scipy.stats.t(3.0)
    assert few["reproduced"] == pytest.approx(t3.sf(t3.isf(findings.ALPHA / (2 * holm)) - 1 / se),
                                              abs=1e-3)  # fmt: skip
    no_gain = {"kind": "no gain", "paper gain here": 0.0, "margin": 1.0}
    assert findings.outcome_chances(no_gain, se, df, 0.0, holm=holm)["reproduced"] > 0.9


def _twin(lrs, losses, device="cpu (x86_64)", unit="AVX512-BF16"):
    epochs = [{"lr": lr, "seconds": 10.0 + i, **dict.fromkeys(study.TRAINING_METRICS, loss)}
              for i, (lr, loss) in enumerate(zip(lrs, losses, strict=True))]  # fmt: skip
    env = {"device": device, "threads": 2, "torch": "2.14.1"}
    config = {"run": {"config": "A", "seed": 1}, "environment": env,
              "precision": f"bf16 autocast on a CPU with {unit}"}  # fmt: skip
    return {"config": config, "metrics": epochs}


def test_design_2_is_compared_with_design_1_on_the_epochs_before_their_rates_part():
    plateau = _twin([0.01] * 4, [1.0, 0.9, 0.8, 0.7])
    annealed = _twin([0.01, 0.01, 0.001, 0.001], [1.0, 0.9, 0.5, 0.4])  # parts after epoch 2
    rows = study.twins({"A-seed1": plateau, "A-annealed-seed1": annealed})
    assert rows == [{"run": "A-annealed-seed1", "twin": "A-seed1", "epochs shared": 2,
                     "agree": True}]  # fmt: skip
    drifted = _twin([0.01, 0.01, 0.001, 0.001], [1.0, 0.9000001, 0.5, 0.4])
    assert study.twins({"A-seed1": plateau, "A-annealed-seed1": drifted})[0]["agree"] is False
    elsewhere = _twin([0.01, 0.01, 0.001, 0.001], [1.0, 0.9, 0.5, 0.4], device="cuda (H100)")
    assert study.twins({"A-seed1": plateau, "A-annealed-seed1": elsewhere})[0]["agree"] is None
    amx = _twin([0.01, 0.01, 0.001, 0.001], [1.0, 0.9000001, 0.5, 0.4], unit="AMX-BF16")
    assert study.twins({"A-seed1": plateau, "A-annealed-seed1": amx})[0]["agree"] is None
    other_cpu = _twin([0.01, 0.01, 0.001, 0.001], [1.0, 0.9000001, 0.5, 0.4])
    other_cpu["config"]["environment"]["cpu"] = "another model; AVX512"  # the twin names none
    assert study.twins({"A-seed1": plateau, "A-annealed-seed1": other_cpu})[0]["agree"] is None
    assert study.twins({"A-annealed-seed1": annealed, "A-seed2": plateau}) == []


def test_a_finding_s_effect_is_the_mean_of_its_seeds_effects():
    two_a = next(f for f in findings.FINDINGS if f.key == "2a")
    names = [p.name for p in RECORDS.iterdir() if p.name.split("-seed")[0] in ("A", "B")]
    records = {name: study.load_record(RECORDS, name) for name in names}
    per_seed = findings.per_seed_effects(two_a, records)
    assert list(per_seed) == findings.seeds_of(two_a, records) and len(per_seed) >= 2
    for seed, effect in per_seed.items():
        errors = [100 * (1 - study.correct(records[f"{c}-seed{seed}"]).mean()) for c in "AB"]
        assert effect == pytest.approx(errors[0] - errors[1], abs=1e-9)
    mean = np.mean(list(per_seed.values()))
    assert findings.test(two_a, records)["effect"] == pytest.approx(mean)


def test_init_rows_compare_with_the_gaussian():
    censored, left = (
        dict.fromkeys((0, 1, 2), (300, False)),
        {1: (40, True), 0: (30, True), 2: (20, True)},
    )
    steps = {
        ("D", "gaussian-width"): censored,
        ("D", "glorot"): left,  # paired by seed, not by position
        ("D", "transfer"): censored,
        ("E", "gaussian-width"): left,
        ("E", "transfer"): censored,
    }
    rows = {r["claim"]: r for r in findings.init_rows(steps)}
    glorot = rows["D from glorot leaves chance sooner than from N(0, 0.01)"]
    assert glorot["effect"] == pytest.approx(np.mean(np.log10([10, 7.5, 15])))
    assert glorot["ci"][0] == pytest.approx(
        scipy.stats.ttest_1samp(np.log10([10, 7.5, 15]), 0).confidence_interval().low
    )
    assert glorot["ci"][0] > 0 and glorot["ci"][1] == math.inf  # at least: the Gaussian's censored
    both_censored = rows["D from transfer leaves chance sooner than from N(0, 0.01)"]
    assert both_censored["ci"] == (-math.inf, math.inf) and both_censored["p"] == 1.0
    assert findings.decide(both_censored, 1.0) == "inconclusive"  # not "smaller": no bound
    slower = rows["E from transfer leaves chance sooner than from N(0, 0.01)"]
    assert slower["ci"][0] == -math.inf and slower["ci"][1] < 0  # at most: the transfer's censored
    assert findings.decide(slower, slower["p"]) == "contradicted"


def test_init_steps_read_the_study_s_records_on_seeds_paired_with_the_gaussian():
    def rec(first_below: int | None) -> dict:  # three epochs of 30 steps, losses every 10
        below = 9 if first_below is None else first_below
        losses = [2.3] * below + [1.0] * (9 - below)
        return {"metrics": [{"loss_every_10_steps": losses[i * 3 : (i + 1) * 3]} for i in range(3)]}

    records = {
        "D-gaussian-width-seed0": rec(None),
        "D-transfer-seed0": rec(4),
        "D-seed0": rec(1),
        "D-gaussian-width-seed1": rec(None),
        "D-seed1": rec(0),
    }  # seed 1: no transfer run
    assert study.init_run_name("D", "glorot", 0) == "D-seed0"
    assert not any("glorot" in r.name for r in study.study_runs())
    steps = findings.init_steps(records, per_epoch=30)
    assert steps[("D", "gaussian-width")] == {0: (90, False), 1: (90, False)}
    assert steps[("D", "transfer")] == {0: (50, True)}  # each scheme on its own seeds
    assert steps[("D", "glorot")] == {0: (20, True), 1: (10, True)}
    assert all(steps[("E", k)] == {} for k in study.INIT_SCHEMES)


def test_design_2_of_9d_trains_e_s_two_schemes_on_fresh_seeds():
    designed = {r.name: r for r in study.study_runs()}
    assert not set(study.RESCUE_SEEDS) & set(study.INIT_SEEDS + study.SEEDS)  # none seen
    for seed in study.RESCUE_SEEDS:
        source = designed[f"A-seed{seed}"]
        assert source.scheme is None and not source.annealed and source.protocols == ("single",)
        for scheme in (findings.GAUSSIAN, "transfer"):
            run = designed[study.init_run_name("E", scheme, seed)]
            assert run.profile().epochs == study.INIT_EPOCHS and run.protocols == ()
        transfer = designed[f"E-transfer-seed{seed}"]
        assert transfer.init(Path("study")).endswith(f"A-seed{seed}")
        order = list(designed)
        assert order.index(f"A-seed{seed}") < order.index(f"E-transfer-seed{seed}")


def test_ten_seeds_decide_9d_whatever_they_show():
    rows = len(findings.FINDINGS) + len(study.INIT_CONFIGS) * (len(study.INIT_SCHEMES) - 1)
    assert rows == 18
    assert findings.rescue_decides(len(study.RESCUE_SEEDS), rows)
    assert not findings.rescue_decides(8, rows)  # eight: all rescued, p = 2**-7, too weak
    some = findings.rescue_row([True] * 4 + [False] * 6, [False] * 10)
    assert some["effect"] == pytest.approx(0.4) and some["p"] == pytest.approx(0.125)
    assert some["ci"][0] < some["effect"] < some["ci"][1] < 1  # below the paper's: every seed
    assert findings.decide(some, some["p"]) == "smaller than the paper's"
    every = findings.rescue_row([True] * 10, [False] * 10)
    assert every["p"] == pytest.approx(2**-9) and every["ci"][1] == pytest.approx(1.0)
    assert findings.decide(every, rows * every["p"]) == "reproduced"
    assert findings.interval_agrees({**every, "status": "reproduced"})


def test_9d_moves_to_design_2_once_all_its_seeds_are_recorded():
    def rec(left: bool) -> dict:  # three epochs of 30 steps, losses every 10
        losses = [2.3, 1.0, 1.0] if left else [2.3, 2.3, 2.3]
        return {"metrics": [{"loss_every_10_steps": losses}] * 3}

    records = {}
    for s in study.INIT_SEEDS:
        records |= {f"E-gaussian-width-seed{s}": rec(False), f"E-transfer-seed{s}": rec(s < 2)}
    for s in study.RESCUE_SEEDS[:-1]:
        records |= {f"E-gaussian-width-seed{s}": rec(False), f"E-transfer-seed{s}": rec(s % 2)}
    design_1 = next(r for r in findings.init_report(records, 30) if r["finding"] == "9d")
    assert design_1["interval over"] == "seeds (bounds)" and design_1["seeds"] == 5
    last = study.RESCUE_SEEDS[-1]
    records |= {f"E-gaussian-width-seed{last}": rec(False), f"E-transfer-seed{last}": rec(True)}
    rows = findings.init_report(records, 30)
    assert [r["finding"] for r in rows] == ["9a", "9b", "9c", "9d"]
    design_2 = rows[-1]
    rescued = sum(s % 2 for s in study.RESCUE_SEEDS[:-1]) + 1
    assert design_2["interval over"] == "seeds (paired shares)" and design_2["seeds"] == 10
    assert design_2["effect"] == pytest.approx(rescued / 10)
    assert design_2["p"] == pytest.approx(2 * 0.5**rescued)


def test_lrn_is_torch_s_and_b5x5_is_b_with_5x5_pairs():
    x = torch.randn(2, 16, 7, 7) * 30
    torch.testing.assert_close(LocalResponseNorm(**LRN)(x), nn.LocalResponseNorm(**LRN)(x))
    model = build_vgg("b-5x5", 10, width=0.25, image_size=64)
    kernels = [m.kernel_size for m in model.features if isinstance(m, nn.Conv2d)]
    assert kernels == [(5, 5)] * 5 and len(layer_names("B-5x5")) == 5
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 10)


def test_run_names_and_defaults():
    assert runs.run_name("D", init="transfer:../runs/tiny/A", seed=2) == "D-transfer-seed2"
    assert runs.run_name("D", jitter=True, seed=0) == "D-jitter-seed0"
    assert runs.run_name("B", annealed=True, seed=5) == "B-annealed-seed5"
    assert runs.book_run("tiny", "A") == "../runs/tiny/A"
    assert runs.book_run("tiny", "E", "glorot", 3) == "../runs/tiny/init/E-glorot-seed3"
    assert is_default({"a": 1}, {"a": 1, "b": 2}) and not is_default({"a": 2}, {"a": 1})
    assert not math.isnan(findings.STALL)


@pytest.mark.parametrize(
    "kind, status, ci, agrees",
    [
        ("gain", "reproduced", (0.1, 0.9), True),
        ("gain", "reproduced", (-0.1, 0.9), False),
        ("gain", "contradicted", (-0.9, -0.1), True),
        ("no gain", "contradicted", (0.2, 0.9), True),
        ("no gain", "reproduced", (-0.5, 0.2), True),
        ("no gain", "reproduced", (-0.5, 0.4), False),
        ("gain", "inconclusive", (-0.5, 0.4), True),
    ],
)
def test_an_interval_agrees_with_its_decision(kind, status, ci, agrees):
    row = {"kind": kind, "status": status, "ci": ci, "margin": 0.3}
    assert findings.interval_agrees(row) is agrees
