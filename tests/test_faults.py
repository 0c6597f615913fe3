"""Faults of run directories, as a new user and an adversarial tester meet them: each test
reproduces one and shows the one-line answer, with real processes and signals where the fault
is about them."""

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from vggbook import runs
from vggbook import train as train_mod
from vggbook.profiles import get_profile
from vggbook.runs import RunDirError, RunSpec
from vggbook.train import NonFiniteLossError, TrainingInterrupted, train

ROOT = Path(__file__).resolve().parent.parent
SMALL = dict(width=0.125, batch_size=32, limit_train=256, val_images=64, epochs=1, workers=0)
# The same small run from the command line.
CLI = ["--limit-train", "256", "--val-images", "64", "--batch-size", "32", "--no-progress"]
CLI += ["--set", "width=0.125"]
LONG = ["--epochs", "500", "--set", "patience=1000"]  # a run that is still going seconds later


def small(**changes):
    return get_profile("tiny", **{**SMALL, **changes})


def weights(run_dir):
    return torch.load(Path(run_dir) / runs.CHECKPOINT, weights_only=True)["model"]


def same_weights(a, b) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def start(*args) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "vggbook", *map(str, args)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as a terminal delivers it, also when the suite was started with SIGINT ignored
        # (a background job of a non-interactive shell), which the child would inherit
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def one_line_error(proc: subprocess.Popen, code: int, *fragments: str) -> str:
    """The process's stderr, checked to be one line with the exit code and fragments."""
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == code, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def wait_for_epochs(run_dir: Path, proc: subprocess.Popen, n: int) -> None:
    deadline = time.time() + 180
    metrics = run_dir / runs.METRICS
    while not (metrics.exists() and metrics.read_text().count("\n") >= n):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.05)


@contextmanager
def tmpfs(path: Path, options: str):
    """A tmpfs mounted at ``path`` (root only): a small disk, or a read-only one."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                             capture_output=True)  # fmt: skip
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


# Run identity: one home, one type.


def test_identity_is_what_changes_the_weights():
    base = RunSpec.of("A", small())
    relabelled = RunSpec.of("A", small().replace(name="renamed", notes=("reworded",), workers=3))
    assert base.identity() == relabelled.identity() and not base.differences(relabelled)
    assert "lr: 0.01 there, 0.02 asked" in base.differences(RunSpec.of("A", small(lr=0.02)))
    assert "seed" in base.differences(RunSpec.of("A", small(), seed=1))
    assert RunSpec.from_json(json.loads(json.dumps(base.to_json()))) == base


def test_weights_do_not_depend_on_the_worker_count(tmp_path):
    """Every sample draws its crop, flip and colour shift from its own stream."""
    for workers in (0, 2):
        train("A", small(workers=workers), tmp_path / f"w{workers}", progress=False)
    assert same_weights(tmp_path / "w0", tmp_path / "w2")


def test_a_reworded_profile_still_finds_its_run(tmp_path):
    history = train("A", small(), tmp_path / "r", progress=False)
    again = train("A", small(notes=("a new note",)), tmp_path / "r", resume=True, progress=False)
    assert again == history


def test_resume_checks_the_checkpoints_own_record(tmp_path):
    run_dir = tmp_path / "r"
    assert start("train", "--run-dir", run_dir, *CLI).wait(timeout=300) == 0
    (run_dir / runs.CONFIG).unlink()
    proc = start("train", "--run-dir", run_dir, *CLI, "--resume", "--lr", "0.05", "--seed", "3")
    one_line_error(proc, 2, "holds a different run (by its checkpoint.pt", "lr: 0.01 there")


def test_a_finished_run_is_never_rewritten(tmp_path):
    run_dir = tmp_path / "r"
    history = train("A", small(), run_dir, progress=False)
    records = lambda: {p.name: (p.read_bytes(), p.stat().st_mtime_ns)  # noqa: E731
                       for p in run_dir.iterdir() if p.name != runs.LOCK}  # fmt: skip
    before = records()
    assert train("A", small(), run_dir, resume=True, progress=False) == history
    assert records() == before and len(before) == 3


def test_a_transferred_run_resumes_without_its_source(tmp_path):
    source, deep = tmp_path / "A", tmp_path / "D"
    train("A", small(), source, progress=False)
    train("D", small(), deep, init=f"transfer:{source}", progress=False)
    (source / runs.CHECKPOINT).unlink()
    history = train("D", small(epochs=2), deep, init=f"transfer:{source}", resume=True,
                    progress=False)  # fmt: skip
    assert [r["epoch"] for r in history] == [1, 2]
    assert runs.load_config(deep)["transferred"][0]["layer"] == "conv1_1"


def test_transfer_refuses_a_source_of_another_dataset_classes_or_width(tmp_path):
    source = tmp_path / "A"
    train("A", small(), source, progress=False)
    wider = [a.replace("width=0.125", "width=0.25") for a in CLI]
    proc = start("train", "--config", "D", "--run-dir", tmp_path / "D", *wider,
                 "--init", f"transfer:{source}")  # fmt: skip
    err = one_line_error(proc, 2, "width 0.125", "width 0.25")
    assert "same dataset, classes, width and crop" in err
    ckpt = torch.load(source / runs.CHECKPOINT, weights_only=True)
    for field, value in (("dataset", "cifar10"), ("num_classes", 5)):
        ckpt["run"]["profile"][field] = value
        torch.save(ckpt, source / runs.CHECKPOINT)
        with pytest.raises(ValueError, match=f"the source is [^:]*{value}"):
            train("D", small(), tmp_path / f"D-{field}", init=f"transfer:{source}", progress=False)


# Locked, crash-safe run directories.


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    run_dir = tmp_path / "r"
    first = start("train", "--run-dir", run_dir, *CLI, *LONG)
    try:
        deadline = time.time() + 120
        while not ((run_dir / runs.LOCK).exists() and (run_dir / runs.LOCK).read_text().strip()):
            assert first.poll() is None and time.time() < deadline, first.stderr.read()
            time.sleep(0.05)
        second = start("train", "--run-dir", run_dir, *CLI, *LONG, "--resume")
        one_line_error(second, 2, f"in use by process {first.pid}", str(run_dir))
    finally:
        first.kill()
        first.wait()
    assert not (run_dir / runs.CONFIG).exists() or runs.load_config(run_dir)["run"]["seed"] == 0


def test_stale_temporaries_are_removed_at_the_next_start(tmp_path):
    run_dir = tmp_path / "r"
    train("A", small(), run_dir, progress=False)
    stale = run_dir / ".checkpoint.pt.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    train("A", small(epochs=2), run_dir, resume=True, progress=False)
    assert not stale.exists()
    assert [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_training_in_one_line(tmp_path, sig, code):
    run_dir = tmp_path / "r"
    proc = start("train", "--run-dir", run_dir, *CLI, *LONG)
    wait_for_epochs(run_dir, proc, 1)
    proc.send_signal(sig)
    err = one_line_error(proc, code, "interrupted in epoch", "is intact: rerun with --resume")
    done = torch.load(run_dir / runs.CHECKPOINT, weights_only=True)["epoch"]
    assert f"the checkpoint of epoch {done} in" in err
    resumed = start("train", "--run-dir", run_dir, *CLI, "--epochs", str(done + 1),
                    "--set", "patience=1000", "--resume")  # fmt: skip
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()


def test_an_interrupt_during_a_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    run_dir = tmp_path / "r"
    train("A", small(), run_dir, progress=False)
    before = (run_dir / runs.CHECKPOINT).read_bytes()

    def interrupted(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(runs.torch, "save", interrupted)
    with pytest.raises(TrainingInterrupted, match="while saving the checkpoint of epoch 2; the "
                       "checkpoint of epoch 1 in .* is intact: rerun with --resume"):  # fmt: skip
        train("A", small(epochs=2), run_dir, resume=True, progress=False)
    assert (run_dir / runs.CHECKPOINT).read_bytes() == before
    assert [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")] == []


def test_a_full_disk_is_named_and_keeps_the_last_checkpoint(tmp_path):
    """6 MB holds one 3.6 MB checkpoint but not a second beside it."""
    with tmpfs(tmp_path / "disk", "size=6m") as disk:
        proc = start("train", "--run-dir", disk / "r", *CLI, "--epochs", "2")
        one_line_error(proc, 1, f"no space left on device while writing {disk / 'r'}",
                       "the checkpoint of epoch 1 in")  # fmt: skip
        assert torch.load(disk / "r" / runs.CHECKPOINT, weights_only=True)["epoch"] == 1


def test_an_unwritable_run_directory_is_refused_before_the_data_is_read(tmp_path):
    """An empty --data-root: refusing the directory first is the only way not to fail on it."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("not a directory")
    places = [tmp_path / "file" / "r"]
    with tmpfs(tmp_path / "ro", "ro,size=1m") as read_only:
        places.append(read_only / "r")
        for run_dir in places:
            proc = start("train", "--run-dir", run_dir, *CLI, "--data-root", tmp_path / "empty")
            one_line_error(proc, 2, f"cannot write to run directory {run_dir}")


def test_a_class_count_the_dataset_does_not_have_is_named(tmp_path):
    proc = start("train", "--run-dir", tmp_path / "r", *CLI, "--set", "num_classes=5")
    one_line_error(proc, 2, "num_classes is 5, but fashion-mnist has 10 classes",
                   "--set num_classes=10")  # fmt: skip
    assert not (tmp_path / "r" / runs.CHECKPOINT).exists()


def test_a_non_finite_first_epoch_leaves_nothing_in_the_way(tmp_path):
    run_dir = tmp_path / "r"
    proc = start("train", "--run-dir", run_dir, *CLI, "--lr", "1e8", "--init", "glorot")
    one_line_error(proc, 1, "the training loss became", "at epoch 1",
                   "no checkpoint exists yet")  # fmt: skip
    assert [p.name for p in run_dir.iterdir() if p.name != runs.LOCK] == []
    assert start("train", "--run-dir", run_dir, *CLI).wait(timeout=300) == 0


def test_the_mean_rgb_is_computed_once_and_reused_on_resume(tmp_path, monkeypatch):
    run_dir = tmp_path / "r"
    train("A", small(), run_dir, progress=False)

    def recompute(*args, **kwargs):
        raise AssertionError("the mean RGB was computed again on resume")

    monkeypatch.setattr(train_mod.augment, "mean_rgb", recompute)
    train("A", small(epochs=2), run_dir, resume=True, progress=False)
    ckpt = torch.load(run_dir / runs.CHECKPOINT, weights_only=True)
    assert ckpt["mean_rgb"] == runs.load_config(run_dir)["mean_rgb"]


# Loading never executes code.


class Payload:
    """A pickle that runs a shell command when it is loaded with weights_only=False."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_checkpoint_runs_no_code_in_any_path(tmp_path):
    good, evil = tmp_path / "good", tmp_path / "evil"
    train("A", small(), good, progress=False)
    evil.mkdir()
    marker = tmp_path / "pwned"
    ckpt = torch.load(good / runs.CHECKPOINT, weights_only=True)
    torch.save({**ckpt, "model": Payload(marker)}, evil / runs.CHECKPOINT)
    file = str(evil / runs.CHECKPOINT)
    for args in (
        ["evaluate", "--run-dir", evil],
        ["evaluate", "--run-dir", good, "--fuse", evil],
        ["train", "--config", "D", "--run-dir", tmp_path / "D", *CLI, "--init", f"transfer:{evil}"],
        ["train", "--run-dir", evil, *CLI, "--resume"],
    ):
        one_line_error(start(*args), 2, file, "asks to import posix.system, refused")
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["truncated", "random", "foreign"])
def test_a_damaged_or_foreign_checkpoint_is_named_in_one_line(tmp_path, kind, capsys):
    from vggbook.cli import main

    good, bad = tmp_path / "good", tmp_path / "bad"
    train("A", small(), good, progress=False)
    bad.mkdir()
    file = bad / runs.CHECKPOINT
    if kind == "truncated":
        file.write_bytes((good / runs.CHECKPOINT).read_bytes()[:100_000])
    elif kind == "random":
        file.write_bytes(os.urandom(4096))
    else:
        torch.save({"weight": torch.zeros(3)}, file)
    for args in (
        ["evaluate", "--run-dir", str(bad)],
        ["train", "--config", "D", "--run-dir", str(tmp_path / "D"), *CLI, "--init",
         f"transfer:{bad}"],
    ):  # fmt: skip
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(file) in err, err
        assert "not a readable vggbook checkpoint" in err or "not a vggbook checkpoint" in err


def test_a_missing_run_names_the_parameter_and_its_producer(tmp_path):
    with pytest.raises(RunDirError, match="deep_runs: no trained run at .*: chapter 4 produces"):
        runs.require(tmp_path / "nothing", "deep_runs", "chapter 4")
    err = RunDirError("x")._render_traceback_()
    assert err == ["RunDirError: x"]


def test_the_product_reads_nothing_outside_the_repository():
    offenders = [
        str(p.relative_to(ROOT))
        for folder in ("vggbook", "book")
        for p in (ROOT / folder).rglob("*")
        if p.suffix in (".py", ".ipynb", ".md") and "shared/" in p.read_text()
    ]
    assert offenders == []


def test_non_finite_loss_message_in_process(tmp_path, monkeypatch):
    real = train_mod.F.cross_entropy
    calls = {"n": 0}

    def poisoned(logits, y):
        calls["n"] += 1
        return real(logits, y) * (float("nan") if calls["n"] == 2 else 1)

    monkeypatch.setattr(train_mod.F, "cross_entropy", poisoned)
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 2.*no checkpoint exists yet"):
        train("A", small(), tmp_path / "r", progress=False)
