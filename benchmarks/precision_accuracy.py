"""Does bf16 autocast train as well as fp32? Net A under the tiny profile, trained twice per
seed (the same seed, data order and augmentation; only the precision differs), each net's top-1
error on all 10,000 Fashion-MNIST test images (single scale, fp32 evaluation).

Per seed: McNemar's exact test on the images where exactly one of the two nets is right and a
paired bootstrap interval of the error difference (``vggbook.stats.mcnemar``). Over seeds: the
mean difference with a t interval (``vggbook.stats.seed_level``).

    python benchmarks/precision_accuracy.py --seeds 0 1 2

Runs go to runs/precision/ (reused when present). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from vggbook import data, evaluate, runs, stats
from vggbook.profiles import get_profile
from vggbook.train import train

ROOT = Path(__file__).resolve().parent.parent


def test_correct(run_dir: Path) -> torch.Tensor:
    """Whether the run's net classifies each test image right (single scale, all images)."""
    ckpt = runs.load_checkpoint(run_dir)
    model, spec = runs.model_of(ckpt, run_dir)
    setting = evaluate.Setting.of_run(spec.profile, ckpt["mean_rgb"], "single")
    test = data.load_dataset(spec.profile.dataset, "test")
    probs, labels = evaluate.predict(model, test, "single", setting, batch_size=500)
    return probs.argmax(1) == labels


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--config", default="A")
    args = p.parse_args()
    rows = []
    for seed in args.seeds:
        correct = {}
        for name, amp in (("fp32", False), ("bf16", True)):
            run_dir = ROOT / "runs" / "precision" / f"{args.config}-{name}-seed{seed}"
            train(args.config, get_profile("tiny", amp=amp), run_dir, seed=seed, resume=True,
                  progress=False)  # fmt: skip
            correct[name] = test_correct(run_dir)
        c = stats.mcnemar(correct["fp32"], correct["bf16"])  # effect: fp32 - bf16 error
        rows.append({"seed": seed, "fp32_error": round(c.error_a, 2),
                     "bf16_error": round(c.error_b, 2), "bf16_minus_fp32": round(-c.effect, 2),
                     "ci95": [round(-c.ci[1], 2), round(-c.ci[0], 2)],
                     "only_fp32_right": c.only_a, "only_bf16_right": c.only_b,
                     "mcnemar_p": round(c.p, 4)})  # fmt: skip
        print(rows[-1])
    summary = {"config": args.config, "profile": "tiny", "test_images": c.n, "seeds": rows}
    if len(rows) > 1:
        s = stats.seed_level([r["bf16_error"] for r in rows], [r["fp32_error"] for r in rows])
        summary["mean_bf16_minus_fp32"] = round(s.effect, 3)
        summary["ci95"], summary["ttest_p"] = [round(s.ci[0], 3), round(s.ci[1], 3)], s.p
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
