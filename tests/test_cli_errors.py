"""The CLI says what is wrong in one line: ``vggbook: error: ...`` on stderr, exit status 2.

Every call runs ``vggbook.cli.main`` in-process with ``vggbook.train.train`` replaced by a
recorder, so no test trains: a bad value must be refused before training starts."""

import dataclasses
import json

import pytest

from vggbook import cli
from vggbook import train as train_mod
from vggbook.profiles import PROFILES, Profile


@pytest.fixture
def trained(monkeypatch):
    """The profiles ``train`` was called with (the CLI imports it at call time)."""
    calls = []

    def fake_train(config, profile, run_dir, **kwargs):
        calls.append(profile)
        return []

    monkeypatch.setattr(train_mod, "train", fake_train)
    return calls


def train_cli(tmp_path, *args):
    return cli.main(["train", "--run-dir", str(tmp_path / "r"), *args])


def one_line_error(capsys, code) -> str:
    """The error message, after checking it is one line on stderr with exit status 2."""
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("vggbook: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.removeprefix("vggbook: error: ").strip()


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("width=wide", "profile field width: expected a number, got 'wide'"),
        ("crop=abc", "profile field crop: expected an integer, got 'abc'"),
        ("scale=[37]", "profile field scale: expected an integer S or a range [Smin, Smax]"),
        ("scale=1,2,3", "profile field scale: expected an integer S or a range"),
        ("epochs=1.5", "profile field epochs: expected an integer, got '1.5'"),
        ("flip=maybe", "profile field flip: expected true or false"),
        ("val_images=lots", "profile field val_images: expected an integer, or none, got 'lots'"),
        ("notes=[bad", "profile field notes: expected one note, or a JSON list of strings"),
        ("colour=red", "unknown profile field(s) ['colour']"),
        ("epochs", "--set takes FIELD=VALUE, got 'epochs'"),
    ],
)
def test_a_value_that_does_not_parse_is_one_line(tmp_path, capsys, trained, item, message):
    code = train_cli(tmp_path, "--set", item)
    assert one_line_error(capsys, code).startswith(message)
    assert trained == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "pixel_scale=0"], "profile field pixel_scale: expected a positive"),
        (["--set", "num_classes=0"], "profile field num_classes: expected an integer >= 1, got 0"),
        (["--set", "max_decays=-1"], "profile field max_decays: expected an integer >= 0, got -1"),
        (["--set", "scale=31"], "profile field scale: expected S >= crop (32)"),
        (["--set", "scale=[73,37]"], "got (73, 37)"),
        (["--set", "dropout=1"], "profile field dropout: expected a number in [0, 1), got 1.0"),
        (["--set", "lr=nan"], "profile field lr: expected a positive finite number, got nan"),
        (["--set", "init="], "profile field init: expected a non-empty string"),
        (["--epochs", "0"], "profile field epochs: expected an integer >= 1, got 0"),
        (["--batch-size", "0"], "profile field batch_size: expected an integer >= 1, got 0"),
        (["--lr", "-1"], "profile field lr: expected a positive finite number, got -1.0"),
        (["--workers", "two"], "profile field workers: expected an integer, got 'two'"),
    ],
)
def test_an_impossible_value_is_one_line(tmp_path, capsys, trained, args, message):
    assert message in one_line_error(capsys, train_cli(tmp_path, *args))
    assert trained == []


def test_set_works_for_fields_that_also_have_a_flag(tmp_path, capsys, trained):
    args = ["--set", "epochs=1", "--set", "val_images=128", "--set", "limit_train=none"]
    assert train_cli(tmp_path, *args, "--set", "scale=37,73", "--set", "flip=no") == 0
    (profile,) = trained
    assert (profile.epochs, profile.val_images, profile.limit_train) == (1, 128, None)
    assert profile.scale == (37, 73) and profile.flip is False
    assert profile == PROFILES["tiny"].replace(
        epochs=1, val_images=128, limit_train=None, scale=(37, 73), flip=False
    )


def test_flags_and_set_merge(tmp_path, trained):
    args = ["--profile", "cifar10", "--epochs", "2", "--lr", "0.05", "--set", "epochs=2"]
    assert train_cli(tmp_path, *args, "--set", 'notes=["a, b", "c"]', "--set", "amp=false") == 0
    (profile,) = trained
    assert (profile.name, profile.epochs, profile.lr) == ("cifar10", 2, 0.05)
    assert profile.notes == ("a, b", "c") and profile.amp is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "2", "--set", "epochs=3"], "--epochs 2 and --set epochs=3 disagree"),
        (["--set", "lr=0.1", "--set", "lr=0.2"], "--set lr=0.1 and --set lr=0.2 disagree"),
        (
            ["--val-images", "64", "--set", "val_images=none"],
            "--val-images 64 and --set val_images",
        ),
        (["--init", "glorot", "--set", "init=kaiming"], "--init glorot and --set init=kaiming"),
    ],
)
def test_a_flag_and_set_that_disagree_are_refused(tmp_path, capsys, trained, args, message):
    assert one_line_error(capsys, train_cli(tmp_path, *args)).startswith(message)
    assert trained == []


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(Profile)])
@pytest.mark.parametrize("name", ["tiny", "cifar10"])
def test_every_field_parses_from_its_command_line_form(field, name):
    value = getattr(PROFILES[name], field)
    if isinstance(value, tuple) and field == "scale":
        text = f"[{value[0]},{value[1]}]"
    elif field == "notes":
        text = json.dumps(list(value))
    elif value is None:
        text = "none"
    else:
        text = str(value).lower() if isinstance(value, bool) else str(value)
    assert cli.parse_field(field, text) == value
    assert type(cli.parse_field(field, text)) is type(value)


def test_fixed_lr_steps_parse_from_the_command_line():
    assert cli.parse_field("lr_steps", "[8,11]") == cli.parse_field("lr_steps", "8, 11") == (8, 11)
    assert cli.parse_field("lr_steps", "none") == cli.parse_field("lr_steps", "[]") == ()
    with pytest.raises(ValueError, match=r"^profile field lr_steps: expected epochs like \[8,11\]"):
        cli.parse_field("lr_steps", "[8,x]")


def test_evaluate_run_dir_that_is_a_file_names_its_directory(tmp_path, capsys):
    run = tmp_path / "runs" / "x"
    run.mkdir(parents=True)
    (run / "checkpoint.pt").write_bytes(b"")
    code = cli.main(["evaluate", "--run-dir", str(run / "checkpoint.pt")])
    message = one_line_error(capsys, code)
    assert message == (
        f"--run-dir takes a run directory, got the file {run / 'checkpoint.pt'}: pass {run}"
    )


def test_evaluate_missing_run_dir_says_so(tmp_path, capsys):
    missing = tmp_path / "no-such-run"
    code = cli.main(["evaluate", "--run-dir", str(missing)])
    assert one_line_error(capsys, code).startswith(f"--run-dir {missing} does not exist")


def test_evaluate_fuse_with_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b.pt").write_bytes(b"")
    code = cli.main(
        ["evaluate", "--run-dir", str(tmp_path / "a"), "--fuse", str(tmp_path / "b.pt")]
    )
    message = one_line_error(capsys, code)
    assert message.startswith("--fuse takes a run directory, got the file")
