"""The command line: ``python -m vggbook train|evaluate|study`` (also installed as ``vggbook``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import typing
from pathlib import Path

from .evaluate import PROTOCOLS
from .models import ALIASES, CONFIGS
from .profiles import PROFILES, Profile, get_profile
from .train import Terminated

# The train flags that set a profile field: read as strings, parsed like --set FIELD=VALUE.
PROFILE_FLAGS = ("epochs", "batch_size", "lr", "limit_train", "val_images", "workers")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vggbook", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a VGG config under a profile")
    t.add_argument("--config", default="A", help=f"one of {', '.join([*CONFIGS, *ALIASES])}")
    t.add_argument("--profile", default="tiny", help=f"one of {', '.join(PROFILES)}")
    t.add_argument(
        "--run-dir", required=True, help="where config.json, metrics.jsonl, checkpoint.pt go"
    )
    t.add_argument("--epochs")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--batch-size", help="the global batch, split across processes")
    t.add_argument("--lr")
    t.add_argument("--limit-train", help="train on a class-balanced subset")
    t.add_argument("--val-images")
    t.add_argument("--workers", help="DataLoader workers per process")
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

    s = sub.add_parser("study", help="train and record the runs behind the paper's findings")
    s.add_argument(
        "--root", default="study", help="records go to ROOT/records, weights to ROOT/work"
    )
    s.add_argument("--seeds", type=int, nargs="+", help="only the runs of these seeds")
    s.add_argument("--only", nargs="+", default=[], metavar="NAME", help="only these runs")
    s.add_argument("--witness", action="store_true", help="(on a CPU) record the witness")
    s.add_argument("--data-root")
    s.add_argument("--download", action="store_true")
    s.add_argument("--no-progress", action="store_true")
    s.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a profile field of every run (a smoke test)")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    """Run a command; every failure is one line on stderr. Exit codes: 2 bad input, 1 a run
    that failed, 130 / 143 interrupted by SIGINT / SIGTERM."""
    args = parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "study":
            return _study(args)
        return _evaluate(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"vggbook: error: {e}", file=sys.stderr)
        return 2 if isinstance(e, ValueError | FileNotFoundError) else 1
    except KeyboardInterrupt as e:  # TrainingInterrupted says where; elsewhere nothing was written
        code = getattr(e, "exit_code", 143 if isinstance(e, Terminated) else 130)
        print(f"vggbook: {e or 'interrupted before training started'}", file=sys.stderr)
        return code
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def _train(args: argparse.Namespace) -> int:
    from .train import train

    profile = get_profile(args.profile).replace(**_overrides(args))
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


def _overrides(args: argparse.Namespace) -> dict:
    """The profile fields the command line sets, from the flags and every ``--set FIELD=VALUE``;
    ValueError when two of them give one field different values."""
    given = [
        (f"--{name.replace('_', '-')} {getattr(args, name)}", name, getattr(args, name))
        for name in PROFILE_FLAGS
        if getattr(args, name) is not None
    ]
    for item in args.set:
        name, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--set takes FIELD=VALUE, got {item!r}")
        given.append((f"--set {item}", name.strip(), text))
    overrides: dict[str, object] = {}
    source: dict[str, str] = {}  # the flag or --set item that gave each field
    for where, name, text in given:
        value = parse_field(name, text)
        if name in overrides and overrides[name] != value:
            raise ValueError(f"{source[name]} and {where} disagree: give {name} once")
        overrides[name], source[name] = value, source.get(name, where)
    # --init goes to train() rather than into the profile, but must not contradict --set init=
    if args.init is not None and overrides.get("init", args.init) != args.init:
        raise ValueError(f"--init {args.init} and {source['init']} disagree: give init once")
    return overrides


def parse_field(name: str, text: str) -> object:
    """A profile field's value from the command line, read by the field's declared type: int,
    float, str, bool (true/false, 1/0, yes/no), ``int | None`` (none or null: None),
    ``int | tuple[int, int]`` (37, [37,73] or 37,73), ``tuple[int, ...]`` ([8,11] or 8,11; none
    or [] for none) and ``tuple[str, ...]`` (a JSON list of strings, or one note). ValueError
    names the field and the form it expects, in one line; whether the value is possible
    (epochs >= 1, ...) is the Profile's to say."""
    if name not in {f.name for f in dataclasses.fields(Profile)}:
        raise ValueError(f"unknown profile field(s) {[name]}")
    kind, text = typing.get_type_hints(Profile)[name], text.strip()
    forms = {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true or false (also 1/0, yes/no)",
        int | None: "an integer, or none",
        int | tuple[int, int]: "an integer S or a range [Smin, Smax], e.g. 37 or [37,73]",
        tuple[int, ...]: "epochs like [8,11] or 8,11 (none or []: none)",
        tuple[str, ...]: 'one note, or a JSON list of strings like ["a", "b"]',
    }
    if kind not in forms:
        raise TypeError(f"no command-line form for profile field {name}: {kind}")
    try:
        if kind is bool:
            bools = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
            return bools[text.lower()]
        if kind == int | None:
            return None if text.lower() in ("none", "null") else int(text)
        if kind == int | tuple[int, int]:
            inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
            parts = [int(part) for part in inner.split(",")]
            if len(parts) == 1 and inner == text:
                return parts[0]
            if len(parts) != 2:
                raise ValueError
            return tuple(parts)
        if kind == tuple[int, ...]:
            inner = text.strip("[]()").strip()
            return () if inner.lower() in ("", "none") else tuple(map(int, inner.split(",")))
        if kind == tuple[str, ...]:
            return tuple(json.loads(text)) if text.startswith("[") else (text,) if text else ()
        return kind(text)
    except (ValueError, KeyError):  # json.JSONDecodeError is a ValueError
        raise ValueError(f"profile field {name}: expected {forms[kind]}, got {text!r}") from None


def _run_dir(path: str, flag: str) -> str:
    """``path`` if it is a directory; ValueError in one line if it is missing or a file."""
    if not Path(path).exists():
        raise ValueError(f"{flag} {path} does not exist: pass a run directory of `vggbook train`")
    if not Path(path).is_dir():
        raise ValueError(
            f"{flag} takes a run directory, got the file {path}: pass {Path(path).parent}"
        )
    return path


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
            _run_dir(args.run_dir, "--run-dir"),
            args.protocol,
            fuse_with=[_run_dir(run, "--fuse") for run in args.fuse],
            data_root=args.data_root,
            download=args.download or None,
            batch_size=args.batch_size,
        )
    print(json.dumps(result))
    return 0


def _study(args: argparse.Namespace) -> int:
    from . import study

    overrides = {}
    for item in args.set:
        name, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--set takes FIELD=VALUE, got {item!r}")
        overrides[name.strip()] = parse_field(name.strip(), text)
    if args.witness:
        record = study.witness(args.root, data_root=args.data_root, **overrides)
        study.write_manifest(args.root, record)
        print(json.dumps(record))
        return 0
    done = study.run_study(
        args.root,
        seeds=args.seeds,
        only=args.only,
        data_root=args.data_root,
        download=args.download or None,
        progress=not args.no_progress,
        **overrides,
    )
    study.write_manifest(args.root)
    print(f"study: recorded {len(done)} run(s) in {args.root}/records")
    return 0
