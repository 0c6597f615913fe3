"""The command line: ``python -m vggbook train|evaluate`` (also installed as ``vggbook``)."""

from __future__ import annotations

import argparse
import json
import sys

from .evaluate import PROTOCOLS
from .models import ALIASES, CONFIGS
from .profiles import PROFILES, get_profile


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vggbook", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a VGG config under a profile")
    t.add_argument("--config", default="A", help=f"one of {', '.join([*CONFIGS, *ALIASES])}")
    t.add_argument("--profile", default="tiny", help=f"one of {', '.join(PROFILES)}")
    t.add_argument(
        "--run-dir", required=True, help="where config.json, metrics.jsonl, checkpoint.pt go"
    )
    t.add_argument("--epochs", type=int)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--batch-size", type=int, help="the global batch, split across processes")
    t.add_argument("--lr", type=float)
    t.add_argument("--limit-train", type=int, help="train on a class-balanced subset")
    t.add_argument("--limit-val", type=int)
    t.add_argument("--workers", type=int, help="DataLoader workers per process")
    t.add_argument(
        "--init", help="gaussian, gaussian-0.1, gaussian-width, glorot, kaiming or transfer:RUN"
    )
    t.add_argument("--data-root", help="the dataset's folder")
    t.add_argument("--download", action="store_true", help="allow downloading the dataset")
    t.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override any profile field, e.g. --set dropout=0 --set scale=[37,73]",
    )

    e = sub.add_parser("evaluate", help="evaluate a trained run or torchvision weights")
    source = e.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-dir", help="a run directory written by `vggbook train`")
    source.add_argument("--weights", help="a local file of torchvision VGG weights")
    e.add_argument("--config", default="D", help="the weights' config (with --weights)")
    e.add_argument("--protocol", default="single", choices=PROTOCOLS)
    e.add_argument("--fuse", nargs="+", default=[], metavar="RUN_DIR", help="fuse with these runs")
    e.add_argument("--data-root")
    e.add_argument("--download", action="store_true")
    e.add_argument("--batch-size", type=int, default=64)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        return _evaluate(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"vggbook: error: {e}", file=sys.stderr)
        return 2 if isinstance(e, ValueError | FileNotFoundError) else 1


def _train(args: argparse.Namespace) -> int:
    from .train import train

    profile = get_profile(
        args.profile,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        limit_train=args.limit_train,
        limit_val=args.limit_val,
        workers=args.workers,
        **dict(_field(item) for item in args.set),
    )
    history = train(
        args.config,
        profile,
        args.run_dir,
        seed=args.seed,
        init=args.init,
        data_root=args.data_root,
        download=args.download or None,
        resume=args.resume,
        progress=not args.no_progress,
    )
    if history:
        print(json.dumps(history[-1]))
    return 0


def _field(item: str) -> tuple[str, object]:
    """``FIELD=VALUE`` with VALUE read as JSON where it parses (numbers, true, [37, 73])."""
    name, sep, value = item.partition("=")
    if not sep:
        raise ValueError(f"--set takes FIELD=VALUE, got {item!r}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return name, tuple(parsed) if isinstance(parsed, list) else parsed


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_run, evaluate_weights

    if args.weights:
        if not args.data_root:
            raise ValueError("--weights needs --data-root: an ImageNet-style folder with val/")
        result = evaluate_weights(
            args.weights, args.config, args.data_root, args.protocol, batch_size=args.batch_size
        )
    else:
        result = evaluate_run(
            args.run_dir,
            args.protocol,
            fuse_with=args.fuse,
            data_root=args.data_root,
            download=args.download or None,
            batch_size=args.batch_size,
        )
    print(json.dumps(result))
    return 0
