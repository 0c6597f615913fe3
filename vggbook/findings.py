"""The paper's findings as tests fixed before the runs: which nets, which images, which
test, which decision (chapter 6 applies them to the study's records).

Every comparison is between arms tested on all 10,000 test images: an arm is a config (from
Glorot's initialisation, fixed S unless jittered) under a protocol, over the seeds recorded
for every arm of the finding, or two configs fused. The effect is the paper's direction in
points of top-1 error (positive: as the paper found). Its 95% interval and p come from
``stats.contrast``: seeds and test images are crossed random factors; where the seeds' F test
(``stats.seed_heterogeneity``, "seeds differ (p)") is at or above 0.25 the seed term is pooled
and the interval is the t interval over images of each image's effect averaged over the
seeds; below it, the seeds' variation enters the standard error (Satterthwaite's degrees of
freedom). p is exact McNemar's for one seed and two arms, and is Holm-adjusted across every
row of the report. The paper's effect is carried over as a relative one: its gain divided by
its baseline error, times the book's baseline error.

Revised on 2026-11-30, after seeds 0-2 of A-D and seeds 0-1 of E and the jittered D were
seen and before any run of seeds 3 and 4 was: the interval was the pigeonhole bootstrap
(seeds and images resampled together), which counts the seed-by-image interaction three
times (Owen 2007) and so hardly narrowed as seeds were added. The nets, images, arms and
decision rule below are unchanged.

The statuses (``decide``): for a claimed gain, **reproduced** when the Holm-adjusted p is
below ``ALPHA`` and the effect is positive, **contradicted** when it is below and negative,
**smaller than the paper's** when it is not below but the interval lies below the paper's
effect, **inconclusive** otherwise. For a claimed absence of gain (LRN; E over D), the
margin is the smallest gain between configurations the paper reports (A to B, 3.0% of the
error): **reproduced** when the interval lies below it, **contradicted** when a gain is
significant, **inconclusive** otherwise. Finding 9 measures, seed by seed, log10 of the
steps each scheme takes to leave chance against the paper's Gaussian, in the first
``study.INIT_EPOCHS`` epochs of the study's runs (Glorot's: the architecture runs); the
paper's "stall" is read as at least twice the steps (0.30). A censored time bounds its seed's
effect on one side only, and the interval takes each end from the seeds' bounds on that side
(``stats.bounded_paired``): a seed whose two times are both censored leaves both ends open.

Finding 9 revised on 2026-11-30, before any initialisation run at the study's scale other than
D's of seed 0: it read chapter 4's runs (375 steps on 8,000 images at 32 px), in which no
transferred net left chance in any seed, and counted a censored time as the steps run. A seed
whose two times were both censored so gave an effect of exactly 0, an interval [0, 0] and
"smaller than the paper's" for 9b and 9d: a conclusion those runs cannot support, since
neither time is known. Now such seeds bound nothing, and the rows read the study's runs,
which give every net 1,287 steps on all its images at 64 px: long enough for D transferred
from A to leave chance (seed 0, at step 210: the one such run seen).

Design 2 of finding 2 (rows 2a, 2b, 2c), written on 2026-11-30 before any of its runs. On
design 1 these rows stayed inconclusive on every seed recorded: within 12 epochs most nets end
at the first learning rate, whose last epochs move validation top-1 by about 0.8 points from
one epoch to the next (0.2 after a division), and the plateau rule divides the rate of some
nets and not others; each seed's net is a draw from that spread, larger than any step in depth
the paper reports, so the seeds differ, and on that morning's 26 records the rows' projected
needs were 13, 22 and 18 seeds.
Design 2 trains A, B, D and E again with one change: the learning rate is divided by 10
after epochs 8 and 11 for every net (``study.ANNEALED_STEPS``), so every net ends its
schedule. Everything else is as above: the profile, the images, the test, the Holm family,
the carried-over effects, the margin and the decision rule; the single-scale test only.
Seeds: eight (``study.ANNEALED_SEEDS``), from the power calculation: with the seed term gone,
the seed-by-image variance of design 1's records gives minimum detectable effects at eight
seeds of 0.25 (2a, against the paper's 0.28), 0.24 (2b, 0.54) and 0.24 (2c, margin 0.28).
The three rows are tested on design 2 once all eight seeds of its four nets are recorded
(``current``), and on design 1 until then; design 1's rows stay in chapter 6 either way. If
design 2's seeds still differ, its rows report what they measure, and the seeds they would
need (``stats.seeds_for``), before any further run.

Amended the same day, still before any run of design 2: finding 3 (C against D) joins it, with
net C on the same eight seeds. Its fourth seed, recorded an hour after design 2 was written,
made its seeds differ (C-seed3 against D-seed3) for the same reason, and its projected need on
design 1 rose from 4 seeds to 9; on design 2's terms its mde at eight seeds is 0.23 (paper
0.36).

Amended again on 2026-11-30 (a later session), still before any run of design 2: finding 8
(rows 8a and 8b, fusion) joins it, with D and E of design 2 tested also by dense and
multi-crop evaluation, whose average is the protocol both rows compare (``study.FUSED``).
E's fourth seed, recorded that day, made 8b's seeds differ (their F test at p 0.07; 8b's
effect by seed 0.27, 0.11, 0.25, 0.62) for the reason the rows of Table 3 do, and on design 1
8b would need eight seeds (its mde at its five: 0.36; paper 0.27). With the seed term gone,
design 1's seed-by-image variance gives mde at eight seeds of 0.15 for 8a (paper 0.27) and
8b (0.27). 8a, decided on design 1, moves with 8b: the two rows share their arms.

Design 2 of finding 9d (E transferred from net A against the paper's Gaussian), written on
2026-12-01 before any of its runs. On design 1, E transferred left chance in seeds 0 and 1
(steps 549 and 659) and in none of seeds 2-4 within their 1,287 steps; from the Gaussian, in no
seed. A seed whose two times are both censored bounds nothing, so the row stays open however
many such seeds are added, and no horizon helps if those stalls are permanent: a pilot outside
the study (E transferred from net A of seed 2, the study's profile for 24 epochs, 10,296 steps,
from main at 985a7fe) never left chance, its training loss settled 0.0002 above ln 10. For
such seeds no time to leave chance exists. The question with an answer is the paper's own:
does transfer let E train where the Gaussian stalls it? Design 2 asks it seed by seed, on fresh
seeds (``study.RESCUE_SEEDS``, none seen): E from the Gaussian and transferred from net A of
the same seed, ``study.INIT_EPOCHS`` epochs each; a run's outcome is whether it leaves chance
(as above) within them. The effect is the share of seeds that leave chance from transfer minus
the share from the Gaussian, paired by seed (``stats.paired_shares``): p is exact McNemar's on
the seeds whose two outcomes differ, the interval Newcombe's square-and-add. The paper's
effect is 1: every deep net it transferred trained, and the Gaussian stalls them. The decision
rule is ``decide``'s: reproduced when the Holm-adjusted p is below ``ALPHA``, smaller than the
paper's when it is not and the interval lies below 1. Power: on ten seeds no outcome leaves the
row inconclusive (``rescue_decides``): ten rescued seeds give p = 2**-9, below ``ALPHA`` even
times the eighteen rows of the report, and any seed not rescued puts the interval below 1.
The row moves to design 2 once its ten seeds are recorded (``init_report``).

Design 3 of rows 2a, 3, 8a and 8b, written on 2026-12-06 before any of its runs. Design 2,
complete on 2026-12-05, decided 2b (smaller than the paper's) and 2c (reproduced) and left
these four rows inconclusive, with effects near the paper's carried over (2a +0.33 against
+0.27, 3 +0.30 against +0.35, 8a +0.22 against +0.25, 8b +0.33 against +0.26). Its power
calculation assumed that annealing every net would remove the seed term; it did not: the
seeds of an annealed net still differ (their F test at p 0.005 or less in every row; a net's
test error varies over its eight seeds with a standard deviation of 0.18-0.35 points). Adding
seeds to design 2 after seeing it would be optional stopping, not a test. Design 3 is a fresh
sample: design 2's annealed nets (the same profile, ``study.ANNEALED_STEPS`` and protocols) on
seeds no run of the study has used (``study.FRESH_SEEDS``, from 15), each row tested on design
3's seeds alone, with the same arms, test, Holm family (every row of the report), carried-over
effects and decision rule. Its size comes from design 2's variance components
(``design_3_needs``): the fewest seeds on which a row's test detects the paper's effect with 80%
power at two-sided ``ALPHA / DESIGN_3_HOLM`` rather than ``ALPHA``: when it was written, 10 of
the report's 18 rows were decided at Holm-adjusted p of 0.013 or less, so Holm's step-down
compares a further row at ``ALPHA / 8`` at most. The needs: 2a 37 seeds, 3 23, 8a 15 and 8b
21; each net is trained on the most any of its rows needs (``design_3_sizes``: A and B 37, C
and D 23, E 21: 141 runs, about 33 hours on a 2-core CPU), and rows that share nets share
their seeds (8a is tested on 21). A row moves to design 3 once every run of its seeds is
recorded (``current``) and stays on design 2 until then. What the design can promise
(``design_3_outcomes`` computes it row by row): at the paper's effect a row is reproduced with
probability about 0.8, and were its effect zero it reads "smaller than the paper's" with about
0.95; at half the paper's effect it stays inconclusive with about 0.4 at most. A fixed design
narrows that band; it cannot remove it.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

from . import paper, runs, stats, study

ALPHA = 0.05
NO_GAIN_MARGIN = (paper.TABLE3["A"]["256"][0] - paper.TABLE3["B"]["256"][0]) / paper.TABLE3["A"][
    "256"
][0]
LEFT_CHANCE_LOSS = 2.0  # training loss below which a net has left chance (ln 10 = 2.30)
STALL = math.log10(2)  # the paper's "stall", as an effect on log10 steps
GAUSSIAN = study.INIT_BASELINE  # finding 9's baseline: the paper's init
RESCUED_BY_THE_PAPER = 1.0  # 9d, design 2: the share of seeds the paper's transfer trains


@dataclass(frozen=True)
class Arm:
    config: str
    protocol: str = "single"
    jitter: bool = False
    fused_with: str | None = None  # a second config whose probabilities are averaged in
    annealed: bool = False  # design 2 (findings 2, 3 and 8): the lr divided at fixed epochs

    def run(self, config: str, seed: int) -> str:
        return runs.run_name(config, jitter=self.jitter, annealed=self.annealed, seed=seed)

    @property
    def label(self) -> str:
        name = f"{self.config}+{self.fused_with}" if self.fused_with else self.config
        tags = (" jittered" if self.jitter else "") + (" annealed" if self.annealed else "")
        return f"{name}{tags}, {self.protocol}"


@dataclass(frozen=True)
class Finding:
    key: str
    claim: str
    source: str
    paper: tuple[float, float]  # the paper's baseline top-1 error and its gain, in points
    arms: tuple[tuple[int, Arm], ...]  # (+1 or -1, arm): the effect is sum(c * error)
    kind: str = "gain"  # or "no gain"
    design: int = 1  # 2 and 3: the annealed nets, on ANNEALED_SEEDS and on FRESH_SEEDS

    @property
    def base(self) -> Arm:
        return self.arms[0][1]

    @property
    def configs(self) -> tuple[str, ...]:
        """The nets its arms test."""
        return tuple(dict.fromkeys(c for _, a in self.arms for c in (a.config, a.fused_with) if c))

    @property
    def design_seeds(self) -> tuple[int, ...]:
        """The seeds its design trains every arm on (design 3: those of all its nets)."""
        if self.design == 3:
            seeds = [set(study.FRESH_SEEDS[c]) for c in self.configs]
            return tuple(sorted(set.intersection(*seeds)))
        return study.ANNEALED_SEEDS if self.design == 2 else study.SEEDS


def _t(config: str, scale: str = "256") -> float:
    return paper.TABLE3[config][scale][0]


def _gain(base: Arm, new: Arm) -> tuple[tuple[int, Arm], ...]:
    return ((1, base), (-1, new))


D, DJ, E = Arm("D"), Arm("D", jitter=True), Arm("E")
t4, t5, t6 = paper.TABLE4, paper.TABLE5["D"], paper.TABLE6
FINDINGS = (
    Finding("1", "LRN does not improve net A", "Table 3",
            (_t("A"), _t("A") - _t("A-LRN")), _gain(Arm("A"), Arm("A-LRN")), "no gain"),
    Finding("2a", "depth: B beats A", "Table 3", (_t("A"), _t("A") - _t("B")),
            _gain(Arm("A"), Arm("B"))),
    Finding("2b", "depth: D beats B", "Table 3", (_t("B"), _t("B") - _t("D")),
            _gain(Arm("B"), D)),
    Finding("2c", "depth saturates: E is no better than D", "Table 3",
            (_t("D"), _t("D") - _t("E")), _gain(D, E), "no gain"),
    Finding("3", "3x3 convs (D) beat 1x1 convs (C): spatial context matters", "Table 3",
            (_t("C"), _t("C") - _t("D")), _gain(Arm("C"), D)),
    Finding("4", "two stacked 3x3 convs (B) beat one 5x5 conv (B-5x5)", "Sec. 4.1",
            (_t("B") * (1 + paper.SHALLOW_5X5_RELATIVE), _t("B") * paper.SHALLOW_5X5_RELATIVE),
            _gain(Arm("B-5x5"), Arm("B"))),
    Finding("5", "scale jittering at training helps D", "Table 3",
            (_t("D"), _t("D") - _t("D", "256-512")), _gain(D, DJ)),
    Finding("6a", "multi-scale testing helps D (fixed S)", "Table 4",
            (_t("D"), _t("D") - t4["D"]["256"][0]), _gain(D, Arm("D", "multiscale"))),
    Finding("6b", "multi-scale testing helps the jittered D", "Table 4",
            (_t("D", "256-512"), _t("D", "256-512") - t4["D"]["256-512"][0]),
            _gain(DJ, Arm("D", "multiscale", jitter=True))),
    Finding("6c", "multi-scale testing helps the jittered D more", "Table 4",
            (_t("D"), (_t("D", "256-512") - t4["D"]["256-512"][0])
             - (_t("D") - t4["D"]["256"][0])),
            ((-1, D), (1, Arm("D", "multiscale")),
             (1, DJ), (-1, Arm("D", "multiscale", jitter=True)))),
    Finding("7a", "dense & multi-crop beats dense (jittered D)", "Table 5",
            (t5["dense"][0], t5["dense"][0] - t5["multi-crop & dense"][0]),
            _gain(Arm("D", "dense", jitter=True), Arm("D", "dense+multicrop", jitter=True))),
    Finding("7b", "dense & multi-crop beats multi-crop (jittered D)", "Table 5",
            (t5["multi-crop"][0], t5["multi-crop"][0] - t5["multi-crop & dense"][0]),
            _gain(Arm("D", "multicrop", jitter=True),
                  Arm("D", "dense+multicrop", jitter=True))),
    Finding("8a", "fusing D and E beats D (dense & multi-crop)", "Tables 5, 6",
            (t5["multi-crop & dense"][0],
             t5["multi-crop & dense"][0] - t6["D+E multi-crop & dense"][0]),
            _gain(Arm("D", "dense+multicrop"), Arm("D", "dense+multicrop", fused_with="E"))),
    Finding("8b", "fusing D and E beats E (dense & multi-crop)", "Tables 5, 6",
            (paper.TABLE5["E"]["multi-crop & dense"][0],
             paper.TABLE5["E"]["multi-crop & dense"][0] - t6["D+E multi-crop & dense"][0]),
            _gain(Arm("E", "dense+multicrop"), Arm("D", "dense+multicrop", fused_with="E"))),
)  # fmt: skip


def _annealed(f: Finding, design: int) -> Finding:
    arms = tuple((c, dataclasses.replace(a, annealed=True)) for c, a in f.arms)
    return dataclasses.replace(f, arms=arms, design=design)


ANNEALED = tuple(  # design 2
    _annealed(f, 2) for f in FINDINGS if f.key in ("2a", "2b", "2c", "3", "8a", "8b")
)
DESIGN_3 = tuple(_annealed(f, 3) for f in FINDINGS if f.key in ("2a", "3", "8a", "8b"))
DESIGN_3_HOLM = 8  # design 3 is sized for a row compared at ALPHA / 8 (the text above)


def current(records: dict) -> tuple[Finding, ...]:
    """The findings as the report tests them: each row on its latest design whose runs are
    all recorded (2a-2c, 3, 8a and 8b: design 2; 2a, 3, 8a and 8b: design 3), else design 1."""
    latest = ANNEALED + DESIGN_3
    complete = {f.key: f for f in latest if seeds_of(f, records) == list(f.design_seeds)}
    return tuple(complete.get(f.key, f) for f in FINDINGS)


def correctness(arm: Arm, records: dict, seeds: Sequence[int]) -> np.ndarray:
    """(seeds, images): whether the arm's top-1 class is right on each test image."""
    rows = []
    for seed in seeds:
        rec = records[arm.run(arm.config, seed)]
        if arm.fused_with:
            other = records[arm.run(arm.fused_with, seed)]
            fused = (rec["probs"][arm.protocol] + other["probs"][arm.protocol]) / 2
            rows.append((fused.argmax(1) == rec["labels"]).numpy())
        else:
            rows.append(study.correct(rec, arm.protocol))
    return np.stack(rows)


def seeds_of(finding: Finding, records: dict) -> list[int]:
    """The seeds for which every run of the finding is recorded."""

    def has(arm: Arm, seed: int) -> bool:
        configs = [arm.config] + ([arm.fused_with] if arm.fused_with else [])
        return all(arm.run(c, seed) in records for c in configs)

    return [s for s in finding.design_seeds if all(has(a, s) for _, a in finding.arms)]


def per_seed_effects(finding: Finding, records: dict) -> dict[int, float]:
    """The finding's effect (points, the paper's direction) in each seed recorded for it."""
    seeds = seeds_of(finding, records)
    terms = [(c, correctness(a, records, seeds)) for c, a in finding.arms]
    return dict(zip(seeds, stats.effects(terms).mean(1).tolist(), strict=True))


def _contrast(finding: Finding, records: dict) -> tuple[stats.Contrast, float]:
    """The finding's contrast on its recorded seeds, and its baseline arm's error (points)."""
    seeds = seeds_of(finding, records)
    if not seeds:
        raise runs.RunDirError(f"finding {finding.key}: its runs are not in the study's records")
    terms = [(c, correctness(a, records, seeds)) for c, a in finding.arms]
    return stats.contrast(terms), 100 * (1 - terms[0][1].mean())


def _target(finding: Finding, base_error: float) -> tuple[float, float | None]:
    """The paper's effect carried over to the book's baseline error, and for a claimed
    absence of gain the margin (else None)."""
    paper_base, paper_gain = finding.paper
    margin = NO_GAIN_MARGIN * base_error if finding.kind == "no gain" else None
    return paper_gain / paper_base * base_error, margin


def test(finding: Finding, records: dict) -> dict:
    """A finding's row before Holm: the effect, its interval, p, n and the paper's effect
    carried over to the book's baseline error."""
    result, base_error = _contrast(finding, records)
    paper_here, margin = _target(finding, base_error)
    paper_base, paper_gain = finding.paper
    return {
        "finding": finding.key,
        "claim": finding.claim,
        "source": finding.source,
        "kind": finding.kind,
        "paper gain (points)": paper_gain,
        "paper relative": paper_gain / paper_base,
        "book baseline error": base_error,
        "paper gain here": paper_here,
        "margin": margin,
        "effect": result.effect,
        "ci": result.ci,
        "p": result.p,
        "seeds": result.seeds,
        "seeds differ (p)": result.seeds_differ,
        "interval over": result.over,
        "images": result.images,
        "mde": result.mde,
        "mde, design's seeds": stats.mde_with(result, len(finding.design_seeds)),
        "seeds for the paper's effect": stats.seeds_for(result, margin or paper_here),
    }


def design_3_needs(records: dict) -> dict[str, float]:
    """Design 3's power calculation: for each of its rows, the fewest seeds on which the row's
    test, with the variance components of its design-2 seeds, detects the paper's effect with
    80% power at two-sided ``ALPHA / DESIGN_3_HOLM`` (``stats.seeds_for``)."""
    needs = {}
    for f in ANNEALED:
        if f.key in {g.key for g in DESIGN_3}:
            result, base_error = _contrast(f, records)
            paper_here, margin = _target(f, base_error)
            level = 1 - ALPHA / DESIGN_3_HOLM
            needs[f.key] = stats.seeds_for(result, margin or paper_here, level=level)
    return needs


def design_3_sizes(needs: dict[str, float]) -> dict[str, int]:
    """The seeds design 3 trains each net on: the most any of its rows needs (a row tests
    its arms on the seeds all their nets share)."""
    sizes: dict[str, int] = {}
    for f in DESIGN_3:
        for c in f.configs:
            sizes[c] = max(sizes.get(c, 0), math.ceil(needs[f.key]))
    return dict(sorted(sizes.items()))


def outcome_chances(
    row: dict, se: float, df: float, effect: float, *, holm: int = 1, draws: int = 20_000
) -> dict[str, float]:
    """The chance of each status ``decide`` gives a row whose estimate is the true ``effect``
    plus ``se`` times a t variate on ``df`` degrees of freedom, its interval the estimate
    +- t's two-sided ``1 - ALPHA`` point times ``se`` and its p compared at ``ALPHA / holm``
    (``se`` taken as known). The t variate is read at ``draws`` evenly spaced quantiles, so
    the answer is exact to about ``1 / draws``."""
    t = student_t(df)
    estimates = effect + se * t.ppf((np.arange(draws) + 0.5) / draws)
    half = se * t.ppf(1 - ALPHA / 2)
    p_holm = np.minimum(1.0, holm * 2 * t.sf(np.abs(estimates) / se))
    statuses = collections.Counter(
        decide({**row, "effect": e, "ci": (e - half, e + half)}, p)
        for e, p in zip(estimates, p_holm, strict=True)
    )
    return {status: n / draws for status, n in statuses.most_common()}


def design_3_outcomes(records: dict, fractions: Sequence[float] = (1.0, 0.5, 0.0)) -> dict:
    """What design 3 can promise, row by row: for a true effect of each of ``fractions`` of
    the paper's (carried over), the chance of each status on design 3's seeds at ``ALPHA /
    DESIGN_3_HOLM``, with the variance components of the row's design-2 seeds (``se_with``)."""
    outcomes = {}
    for f in DESIGN_3:
        two = next(g for g in ANNEALED if g.key == f.key)
        result, base_error = _contrast(two, records)
        paper_here, margin = _target(two, base_error)
        row = {"kind": f.kind, "paper gain here": paper_here, "margin": margin}
        se, df = stats.se_with(result, len(f.design_seeds))
        reference = margin or paper_here
        outcomes[f.key] = {
            x: outcome_chances(row, se, df, x * reference, holm=DESIGN_3_HOLM) for x in fractions
        }
    return outcomes


def init_steps(
    records: dict,
    per_epoch: int,
    seeds: Sequence[int] = study.INIT_SEEDS,
    configs: Sequence[str] = study.INIT_CONFIGS,
) -> dict[tuple[str, str], dict[int, tuple[int, bool]]]:
    """Finding 9's measurements in the study's records: for each of ``configs`` and
    ``study.INIT_SCHEMES``, seed: (steps to leave chance in the first ``INIT_EPOCHS`` epochs,
    left), on the ``seeds`` where both its run and the paper's Gaussian's are recorded."""
    steps = {}
    for config in configs:
        for k in study.INIT_SCHEMES:
            name = {(scheme, s): study.init_run_name(config, scheme, s)
                    for scheme in (k, GAUSSIAN) for s in seeds}  # fmt: skip
            steps[(config, k)] = {
                s: study.steps_to_leave_chance(
                    records[name[k, s]]["metrics"][: study.INIT_EPOCHS], LEFT_CHANCE_LOSS, per_epoch
                )
                for s in seeds
                if name[k, s] in records and name[GAUSSIAN, s] in records
            }
    return steps


def init_rows(steps: dict[tuple[str, str], dict[int, tuple[int, bool]]]) -> list:
    """Finding 9's rows: for each config, every scheme against the paper's Gaussian, seed by
    seed, from ``steps[(config, scheme)][seed]``: (steps to leave chance, left). A censored
    time bounds its seed's effect on one side only (``stats.bounded_paired``): where the
    scheme left chance, the effect is at least the one measured; where the Gaussian did, at
    most."""
    rows = []
    for (config, scheme), times in sorted(steps.items()):
        if scheme == GAUSSIAN:
            continue
        gauss = steps[(config, GAUSSIAN)]
        lower, upper = [], []
        for seed, (t, t_left) in times.items():
            g, g_left = gauss[seed]
            d = math.log10(g) - math.log10(t)
            lower.append(d if t_left else -math.inf)
            upper.append(d if g_left else math.inf)
        res = stats.bounded_paired(lower, upper)
        key, claim = f"9{'abcd'[len(rows)]}", f"{config} from {scheme} leaves chance sooner"
        rows.append(_curve_row(key, f"{claim} than from N(0, 0.01)", STALL, res, "seeds (bounds)"))
    return rows


def rescue_steps(
    records: dict, per_epoch: int
) -> dict[tuple[str, str], dict[int, tuple[int, bool]]]:
    """Design 2 of finding 9d: E's steps to leave chance per scheme on ``study.RESCUE_SEEDS``."""
    return init_steps(records, per_epoch, seeds=study.RESCUE_SEEDS, configs=("E",))


def rescue_row(transfer_left: Sequence[bool], gaussian_left: Sequence[bool]) -> dict:
    """Row 9d on design 2, from each seed's outcomes (left chance, from transfer and from the
    Gaussian): the share of seeds that leave chance from transfer minus the share from the
    Gaussian, paired by seed."""
    res = stats.paired_shares(transfer_left, gaussian_left)
    claim = "E from transfer leaves chance where it stalls from N(0, 0.01) (share of seeds)"
    return _curve_row("9d", claim, RESCUED_BY_THE_PAPER, res, "seeds (paired shares)")


def _curve_row(
    key: str,
    claim: str,
    paper_here: float,
    res: stats.BoundedComparison | stats.PairedShares,
    over: str,
) -> dict:
    """A row of finding 9: training curves compared over seeds (no test images, no mde)."""
    return {
        "finding": key,
        "claim": claim,
        "source": "Sec. 3.1",
        "kind": "gain",
        "paper gain (points)": math.inf,
        "paper relative": math.nan,
        "book baseline error": math.nan,
        "paper gain here": paper_here,
        "margin": None,
        "effect": res.effect,
        "ci": res.ci,
        "p": res.p,
        "seeds": res.n,
        "seeds differ (p)": math.nan,
        "interval over": over,
        "images": None,
        "mde": math.nan,
        "mde, design's seeds": math.nan,
        "seeds for the paper's effect": math.nan,
    }


def init_report(records: dict, per_epoch: int) -> list[dict]:
    """Finding 9's rows as the report tests them: 9a-9c on the steps to leave chance, 9d on
    its design 2 once every seed of it is recorded, on design 1 until then."""
    rows = init_rows(init_steps(records, per_epoch))
    rescue = rescue_steps(records, per_epoch)
    transfer, gauss = rescue[("E", "transfer")], rescue[("E", GAUSSIAN)]
    if sorted(transfer) == list(study.RESCUE_SEEDS):
        new = rescue_row([transfer[s][1] for s in transfer], [gauss[s][1] for s in transfer])
        rows = [new if r["finding"] == "9d" else r for r in rows]
    return rows


def rescue_decides(seeds: int, rows: int) -> bool:
    """Whether design 2 of 9d decides the row whatever the outcomes of its ``seeds``, wherever
    its p falls among the ``rows`` of the report (Holm multiplies it by 1 to ``rows``)."""
    for both, only_t, only_g in itertools.product(range(seeds + 1), repeat=3):
        neither = seeds - both - only_t - only_g
        if neither < 0:
            continue
        transfer = [True] * (both + only_t) + [False] * (only_g + neither)
        gauss = [True] * both + [False] * only_t + [True] * only_g + [False] * neither
        row = rescue_row(transfer, gauss)
        if any(decide(row, min(1.0, k * row["p"])) == "inconclusive" for k in (1, rows)):
            return False
    return True


def decide(row: dict, p_holm: float) -> str:
    """A row's status from its Holm-adjusted p and its interval (the module's rule)."""
    significant = p_holm < ALPHA
    lo, hi = row["ci"]
    if row["kind"] == "no gain":
        if significant and row["effect"] > 0:
            return "contradicted"
        return "reproduced" if hi < row["margin"] else "inconclusive"
    if significant:
        return "reproduced" if row["effect"] > 0 else "contradicted"
    return "smaller than the paper's" if hi < row["paper gain here"] else "inconclusive"


def report(rows: list[dict]) -> list[dict]:
    """Every row with its Holm-adjusted p (one family: the whole report) and its status."""
    adjusted = stats.holm([r["p"] for r in rows])
    return [
        {**r, "p (Holm)": q, "status": decide(r, q)} for r, q in zip(rows, adjusted, strict=True)
    ]


def interval_agrees(row: dict) -> bool:
    """Whether a decided row's interval agrees with its status: the whole interval on the side
    of a significant effect, or (no gain, reproduced) below the margin. Undecided rows: True."""
    lo, hi = row["ci"]
    if row["status"] == "contradicted" and row["kind"] == "no gain":
        return lo > 0
    if row["status"] == "reproduced":
        return hi < row["margin"] if row["kind"] == "no gain" else lo > 0
    if row["status"] == "contradicted":
        return hi < 0
    return True
