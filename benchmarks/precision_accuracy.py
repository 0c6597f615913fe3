"""Does bf16 autocast train as well as fp32? Net A under the tiny profile, trained twice per
seed (the same seed, data order and augmentation; only the precision differs), each net's top-1
error on all 10,000 Fashion-MNIST test images (single scale, fp32 evaluation).

Per seed: McNemar's exact test on the images where exactly one of the two nets is right
(``scipy.stats.binomtest``) and the error difference. Over seeds: the mean difference with a
t interval (``scipy.stats.ttest_rel`` on the per-seed errors).

    python benchmarks/precision_accuracy.py --seeds 0 1 2

Runs go to runs/precision/ (reused when present). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from scipy import stats

from vggbook import data, evaluate, runs
from vggbook.profiles import get_profile
from vggbook.train import train

ROOT = Path(__file__).resolve().parent.parent


def test_correct(run_dir: Path) -> torch.Tensor:
    """Whether the run's net classifies each test image right (single scale, all images)."""
    ckpt = runs.load_checkpoint(run_dir)
    model, spec = runs.model_of(ckpt, run_dir)
    setting = evaluate.Setting.of_run(spec.profile, ckpt["mean_rgb"], "single")
    test = data.load_dataset(spec.profile.dataset, "val")
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
        a, b = correct["fp32"], correct["bf16"]
        only_fp32, only_bf16 = int((a & ~b).sum()), int((~a & b).sum())
        mcnemar = stats.binomtest(only_fp32, only_fp32 + only_bf16, 0.5).pvalue
        error = {k: 100 * (1 - v.double().mean().item()) for k, v in correct.items()}
        rows.append({"seed": seed, **{f"{k}_error": round(v, 2) for k, v in error.items()},
                     "bf16_minus_fp32": round(error["bf16"] - error["fp32"], 2),
                     "only_fp32_right": only_fp32, "only_bf16_right": only_bf16,
                     "mcnemar_p": round(mcnemar, 4)})  # fmt: skip
        print(rows[-1])
    diffs = [r["bf16_minus_fp32"] for r in rows]
    summary = {"config": args.config, "profile": "tiny", "test_images": int(len(a)), "seeds": rows}
    if len(rows) > 1:
        test = stats.ttest_rel([r["bf16_error"] for r in rows], [r["fp32_error"] for r in rows])
        low, high = test.confidence_interval(0.95)
        summary["mean_difference"] = round(sum(diffs) / len(diffs), 3)
        summary["ci95"], summary["ttest_p"] = [round(low, 3), round(high, 3)], test.pvalue
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
