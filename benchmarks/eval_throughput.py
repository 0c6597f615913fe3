"""How fast the study's test protocols run: images/s of ``vggbook.evaluate.predict`` on the
first Fashion-MNIST test images, under the study profile, against the old way (contiguous
fp32 tensors, and multi-crop computing all 50 views even where crops repeat; reimplemented
here, labelled as the baseline being replaced). Both sides are fp32 and must give the same
probabilities up to rounding: the largest difference and the top-1 agreement are printed.

    python benchmarks/eval_throughput.py                     # net E, 256 images
    python benchmarks/eval_throughput.py --config D --images 512 --rounds 3

The net has random weights (speed does not depend on them). Sides alternate round by round;
images/s is the median round. "cpu share" is the process's CPU time over wall time and
threads: far below 1 means other processes were running and the numbers are noisy. The last
line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from unittest import mock

import torch
import torch.nn.functional as F

from vggbook import data, evaluate, study
from vggbook.train import RunSpec


def all_fifty_views(model, x: torch.Tensor, crop: int) -> torch.Tensor:
    """The baseline: one pass per view, 50 per scale, repeated crops included."""
    views = [v for c in evaluate.grid_crops(x, crop) for v in (c, c.flip(-1))]
    return torch.stack([F.softmax(model(v), dim=1) for v in views]).mean(0)


def timed(fn) -> tuple[torch.Tensor, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    wall = time.perf_counter() - wall
    return out, wall, (time.process_time() - cpu) / wall / torch.get_num_threads()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="E")
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--protocols", nargs="+", default=["single", "dense", "multicrop"])
    args = p.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    profile = study.StudyRun(args.config, 0).profile()
    model = RunSpec.of(args.config, profile).build_model()
    test = data.load_dataset(profile.dataset, "test")
    images = data.LabelledSubset(test, list(range(args.images)))
    mean = [0.5, 0.5, 0.5]
    results = {}
    for protocol in args.protocols:
        setting = evaluate.Setting.of_run(profile, mean, protocol)

        def baseline(setting=setting, protocol=protocol):
            with mock.patch.object(evaluate, "crop_probs", all_fifty_views):
                return evaluate.predict(model, images, protocol, setting, batch_size=256)[0]

        def vggbook(setting=setting, protocol=protocol):
            return evaluate.predict(model, images, protocol, setting, batch_size=256,
                                    channels_last=profile.channels_last)[0]  # fmt: skip

        sides = {"baseline": baseline, "vggbook": vggbook}
        rates, shares, probs = {k: [] for k in sides}, [], {}
        for r in range(args.rounds):
            for name in list(sides)[r % 2 :] + list(sides)[: r % 2]:
                probs[name], wall, share = timed(sides[name])
                rates[name].append(args.images / wall)
                shares.append(share)
        row = {k: round(statistics.median(v), 1) for k, v in rates.items()}
        row["ratio"] = round(row["vggbook"] / row["baseline"], 2)
        row["max_abs_prob_difference"] = (probs["vggbook"] - probs["baseline"]).abs().max().item()
        same_top1 = probs["vggbook"].argmax(1) == probs["baseline"].argmax(1)
        row["top1_agreement"] = same_top1.float().mean().item()
        row["cpu_share"] = round(min(shares), 2)
        row["Q"] = list(setting.scales)
        results[protocol] = row
        print(protocol, row, flush=True)
    summary = {"config": args.config, "profile": study.PROFILE, "images": args.images,
               "threads": torch.get_num_threads(), "rounds": args.rounds,
               "images_per_second": results}  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
