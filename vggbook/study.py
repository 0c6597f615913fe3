"""The study behind the paper's findings (chapter 6): which runs, trained and tested how.

``python -m vggbook study`` (``make study``) trains every run below, evaluates each on the
whole test split under the protocols its findings need, and keeps a run record per run in
``study/records/NAME/``: ``config.json`` (the run and the environment that trained it),
``metrics.jsonl`` (per epoch, with the training loss every 10 steps), ``evaluation.json`` and
``predictions.npz`` (per test image: its label and the top-5 classes under each protocol; the
class probabilities where fusion needs them). Weights stay in ``study/work/`` (not committed).

The nets of Table 3 (findings 2 and 3) are also trained a second way, design 2: nets A to E
on eight seeds, the learning rate divided after the fixed epochs ``ANNEALED_STEPS`` rather
than at validation plateaus, so that every net ends its schedule within the budget
(``vggbook.findings`` says why and when it replaces design 1). Finding 9d has a design 2 as
well: E from the paper's Gaussian and transferred from net A on the fresh ``RESCUE_SEEDS``.
Design 3 trains design 2's nets again on ``FRESH_SEEDS``, as many per net as the rows of
findings 2a, 3 and 8 need on design 2's variance components.

``study/manifest.json`` holds the design and the witness: the weights' checksum after the
first epoch of one run, retrained in fp32 on a CPU. The test suite retrains it and compares the
checksum bit for bit, so that a change to the training code that the stored records do not
reflect fails CI until the study is run again.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import evaluate, provenance, runs
from .augment import scaled
from .profiles import Profile, get_profile
from .train import train

PROFILE = "study"
SEEDS = (0, 1, 2, 3, 4)  # every architecture and the jittered D (five: see findings)
ARCHITECTURES = ("A", "A-LRN", "B", "B-5x5", "C", "D", "E")
EVERY_PROTOCOL = ("D", "E")  # tested under every protocol (the jittered D too)
FUSED = ("D", "E")  # fixed-S nets whose probabilities are kept, for fusion (Table 6)
INIT_SEEDS = (0, 1, 2, 3, 4)  # finding 9: time to leave chance, per scheme
INIT_CONFIGS = ("D", "E")
INIT_BASELINE = "gaussian-width"  # the paper's N(0, 0.01), at the study's width
INIT_SCHEMES = (INIT_BASELINE, "transfer", "glorot")  # glorot: the profile's own init
INIT_EPOCHS = 3
RESCUE_SEEDS = tuple(range(5, 15))  # finding 9d, design 2: E's two schemes on fresh seeds
ANNEALED_CONFIGS = ("A", "B", "C", "D", "E")  # design 2 of findings 2, 3 and 8
ANNEALED_SEEDS = tuple(range(8))  # the power calculation in findings
ANNEALED_STEPS = (8, 11)  # epochs after which every net's lr is divided by 10
DESIGN_3_SIZES = {"A": 37, "B": 37, "C": 23, "D": 23, "E": 21}  # seeds per net (findings)
FRESH_SEEDS = {c: tuple(range(15, 15 + n)) for c, n in DESIGN_3_SIZES.items()}  # none used yet
WITNESS = ("A", 0)  # config and seed of the run the test suite retrains (first epoch)
PROBS = "dense+multicrop"  # the protocol whose probabilities the fused nets keep
TRAINING_METRICS = ("train_loss", "train_top1", "loss_every_10_steps", "val_loss", "val_top1",
                    "val_top5")  # what an epoch's weights decide (not its time)  # fmt: skip


@dataclass(frozen=True)
class StudyRun:
    """One run of the study: an architecture (``scheme`` None, the profile's Glorot init),
    optionally scale-jittered, or an initialisation run of finding 9."""

    config: str
    seed: int
    jitter: bool = False
    scheme: str | None = None
    annealed: bool = False  # the lr divided after ANNEALED_STEPS, not at plateaus

    @property
    def name(self) -> str:
        tags = {"init": self.scheme, "jitter": self.jitter, "annealed": self.annealed}
        return runs.run_name(self.config, **tags, seed=self.seed)

    def profile(self, **overrides) -> Profile:
        p = get_profile(PROFILE)
        if self.jitter:
            p = p.replace(scale=(scaled(256, p.crop), scaled(512, p.crop)))  # S in [256, 512]
        if self.scheme:
            p = p.replace(epochs=INIT_EPOCHS)
        if self.annealed:
            p = p.replace(lr_steps=ANNEALED_STEPS)
        return p.replace(**overrides)

    def init(self, root: Path) -> str | None:
        """The init argument of ``train``: a transfer names its source, net A of this seed."""
        if self.scheme == "transfer":
            return f"transfer:{root / 'work' / StudyRun('A', self.seed).name}"
        return self.scheme

    @property
    def protocols(self) -> tuple[str, ...]:
        if self.scheme:
            return ()  # finding 9 reads the training curves
        if self.annealed and self.config in FUSED:  # design 2 of finding 8 fuses these
            return ("single", "dense", "multicrop", PROBS)
        if self.annealed or self.config not in EVERY_PROTOCOL:
            return ("single",)
        return evaluate.PROTOCOLS


def design_3_runs() -> list[StudyRun]:
    """Design 3 of findings 2a, 3 and 8: design 2's annealed nets on ``FRESH_SEEDS``."""
    return [StudyRun(c, s, annealed=True) for c, seeds in FRESH_SEEDS.items() for s in seeds]


def study_runs() -> list[StudyRun]:
    """Every run, in training order (each transfer after its source)."""
    arch = [StudyRun(c, s) for s in SEEDS for c in ARCHITECTURES]
    arch += [StudyRun("D", s, jitter=True) for s in SEEDS]
    arch += [StudyRun(c, s, annealed=True) for s in ANNEALED_SEEDS for c in ANNEALED_CONFIGS]
    arch += design_3_runs()
    sources = dict.fromkeys(s for s in INIT_SEEDS + RESCUE_SEEDS if s not in SEEDS)
    arch += [StudyRun("A", s) for s in sources]  # transfer sources
    init = [  # Glorot's is the architecture run: the profile's own init
        StudyRun(c, s, scheme=k)
        for s in INIT_SEEDS
        for c in INIT_CONFIGS
        for k in INIT_SCHEMES
        if k != get_profile(PROFILE).init
    ]
    init += [StudyRun("E", s, scheme=k) for s in RESCUE_SEEDS for k in (INIT_BASELINE, "transfer")]
    return arch + init


def init_run_name(config: str, scheme: str, seed: int) -> str:
    """The run finding 9 reads for a scheme: its initialisation run, or for Glorot's (the
    profile's init) the architecture run, whose first ``INIT_EPOCHS`` epochs are the same."""
    own = scheme == get_profile(PROFILE).init
    return runs.run_name(config, init=None if own else scheme, seed=seed)


def run_study(
    root: str | Path = "study",
    *,
    seeds: Sequence[int] | None = None,
    only: Sequence[str] = (),
    data_root: str | None = None,
    download: bool | None = None,
    progress: bool = True,
    **overrides,
) -> list[str]:
    """Train, test and record the study's runs (those of ``seeds``, or named in ``only``);
    a recorded run is skipped. ``overrides`` change the profile (for a smoke test)."""
    root = Path(root)
    chosen = [
        r
        for r in study_runs()
        if (seeds is None or r.seed in seeds) and (not only or r.name in only)
    ]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    done = []
    for run in chosen:
        out = root / "records" / run.name
        if (out / runs.CONFIG).exists():
            continue
        work = root / "work" / run.name
        start = time.perf_counter()
        if run.scheme == "transfer":  # its source's weights (a recorded run retrains alike)
            source = StudyRun("A", run.seed)
            train(source.config, source.profile(**overrides), root / "work" / source.name,
                  seed=run.seed, data_root=data_root, download=download, resume=True,
                  progress=progress)  # fmt: skip
        train(run.config, run.profile(**overrides), work, seed=run.seed, init=run.init(root),
              data_root=data_root, download=download, resume=True, progress=progress)  # fmt: skip
        record(run, work, out, data_root=data_root, download=download, device=device)
        done.append(run.name)
        print(f"study: {run.name} in {time.perf_counter() - start:.0f} s", flush=True)
    return done


def record(run: StudyRun, work: Path, out: Path, *, device: str = "cpu", **data_args) -> None:
    """Write a trained run's record: its config and metrics, and its test predictions under
    each of its protocols (config.json last: a record with one is complete)."""
    out.mkdir(parents=True, exist_ok=True)
    arrays, evaluation, probs = {}, {}, {}
    for protocol in run.protocols:
        if protocol == "dense+multicrop":  # by definition the average of the two: reused
            p = evaluate.fuse([probs["dense"], probs["multicrop"]])
            info = {"protocol": protocol, "Q": evaluation["dense"]["Q"]}
            info["views_per_image"] = evaluate.views_per_image(protocol, info["Q"])
        else:
            p, labels, info = evaluate.run_predictions(
                work, protocol, device=device, batch_size=256, **data_args
            )
            arrays["labels"] = labels.to(torch.uint8).numpy()
        probs[protocol] = p
        arrays[f"{protocol}.top5"] = p.topk(5, dim=1).indices.to(torch.uint8).numpy()
        if protocol == PROBS and run.config in FUSED and not run.jitter:
            arrays[f"{protocol}.probs"] = p.to(torch.float16).numpy()
        evaluation[protocol] = {**info, **evaluate.errors(p, labels)}
    if arrays:
        buffer = tempfile.SpooledTemporaryFile()
        np.savez_compressed(buffer, **arrays)
        buffer.seek(0)
        runs.write_atomic(buffer.read(), out / "predictions.npz")
        runs.write_atomic(json.dumps(evaluation, indent=1).encode(), out / "evaluation.json")
    runs.write_atomic((work / runs.METRICS).read_bytes(), out / runs.METRICS)
    runs.write_atomic((work / runs.CONFIG).read_bytes(), out / runs.CONFIG)


# Reading the records.


def load_record(records: str | Path, name: str) -> dict:
    """A run record: ``config``, ``metrics`` and, for tested runs, ``evaluation``, ``labels``
    and per protocol ``top5`` (and ``probs`` where kept)."""
    folder = Path(records) / name
    if not (folder / runs.CONFIG).exists():
        raise runs.RunDirError(
            f"the study has no record {name} in {records}: run `make study` (see the README)"
        )
    rec = {"config": json.loads((folder / runs.CONFIG).read_text())}
    rec["metrics"] = runs.load_metrics(folder)
    if (folder / "predictions.npz").exists():
        with np.load(folder / "predictions.npz", allow_pickle=False) as z:
            rec["labels"] = torch.from_numpy(z["labels"].astype(np.int64))
            for key in z.files:
                if key != "labels":
                    protocol, kind = key.rsplit(".", 1)
                    rec.setdefault(kind, {})[protocol] = torch.from_numpy(z[key].astype(
                        np.int64 if kind == "top5" else np.float32))  # fmt: skip
        rec["evaluation"] = json.loads((folder / "evaluation.json").read_text())
    return rec


def correct(rec: dict, protocol: str = "single") -> np.ndarray:
    """Per test image, whether the run's top-1 class under ``protocol`` is right."""
    return (rec["top5"][protocol][:, 0] == rec["labels"]).numpy()


def steps_to_leave_chance(
    metrics: Iterable[dict], threshold: float, steps_per_epoch: int
) -> tuple[int, bool]:
    """The step by which the training loss (a mean over ``LOSS_EVERY`` steps, counted from
    each epoch's start) first fell below ``threshold``, and whether it did; else the steps
    run (a censored time)."""
    from .train import LOSS_EVERY

    done = 0
    for m in metrics:
        for j, loss in enumerate(m["loss_every_10_steps"]):
            if loss < threshold:
                return done + min((j + 1) * LOSS_EVERY, steps_per_epoch), True
        done += steps_per_epoch
    return done, False


def twins(records: dict) -> list[dict]:
    """Design 2's runs beside design 1's of the same net and seed: the two train alike until
    their learning rates part, so where both were trained in one environment (device, CPU model
    where recorded, threads, torch, and the bf16 unit: AMX and AVX-512 BF16 CPUs round
    differently) their leading epochs must agree bit for bit. Per pair: the epochs shared and
    whether they agree (None for pairs trained in different environments, whose arithmetic
    differs)."""
    rows = []
    for name, rec in sorted(records.items()):
        run = rec["config"]["run"]
        twin = runs.run_name(run["config"], seed=run["seed"])
        annealed = runs.run_name(run["config"], annealed=True, seed=run["seed"])
        if name != annealed or twin not in records:
            continue
        pairs = list(zip(rec["metrics"], records[twin]["metrics"], strict=False))
        shared = next((i for i, (x, y) in enumerate(pairs) if x["lr"] != y["lr"]), len(pairs))
        env = [(*(r["config"]["environment"].get(k) for k in ("device", "cpu", "threads", "torch")),
                r["config"].get("precision")) for r in (rec, records[twin])]  # fmt: skip
        same = all(x[k] == y[k] for x, y in pairs[:shared] for k in TRAINING_METRICS)
        rows.append({"run": name, "twin": twin, "epochs shared": shared,
                     "agree": same if env[0] == env[1] else None})  # fmt: skip
    return rows


# The witness: the stored records come from this code.


def state_checksum(state: dict) -> str:
    """SHA-256 of a state dict's tensors, in key order."""
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def cpu_signature() -> str:
    """What decides a CPU's floating-point results here: the model, its kernels, threads."""
    return f"{provenance.cpu_model()}; {torch.get_num_threads()} threads; torch {torch.__version__}"


def witness(root: str | Path = "study", *, data_root: str | None = None, **overrides) -> dict:
    """Retrain the first epoch of the witness run in fp32 on the CPU; its checksum."""
    if torch.cuda.is_available():
        raise RuntimeError("the witness is computed on a CPU: run it where CI runs")
    run = StudyRun(*WITNESS)
    profile = run.profile(epochs=1, amp=False, channels_last=False, **overrides)
    with tempfile.TemporaryDirectory() as tmp:
        train(run.config, profile, tmp, seed=run.seed, init=run.init(Path(root)),
              data_root=data_root, progress=False)  # fmt: skip
        state = runs.load_checkpoint(tmp)["model"]
        first = runs.load_metrics(tmp)[0]
    return {
        "run": run.name,
        "epochs": 1,
        "precision": "fp32",
        "cpu": cpu_signature(),
        "checksum": state_checksum(state),
        "val_top1": first["val_top1"],
    }


def write_manifest(root: str | Path = "study", witness_record: dict | None = None) -> dict:
    """``study/manifest.json``: the design (profile, runs, protocols) and the witness, with the
    environment that recorded the witness (kept as it was when no witness is given, so that
    training runs leave the file, a tracked one, unchanged: their provenance stays clean)."""
    root = Path(root)
    path = root / "manifest.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    manifest = {
        "profile": get_profile(PROFILE).as_dict(),
        "runs": {r.name: {"protocols": list(r.protocols)} for r in study_runs()},
        "witness": witness_record or old.get("witness"),
        "written_by": old["written_by"]
        if "written_by" in old and not witness_record
        else provenance.environment(),
    }
    root.mkdir(parents=True, exist_ok=True)
    runs.write_atomic(json.dumps(manifest, indent=1).encode(), path)
    return manifest
