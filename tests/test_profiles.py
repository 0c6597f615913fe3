import dataclasses
import json
import re

import pytest

from vggbook import paper
from vggbook.profiles import PROFILES, Profile, compare_with_paper, get_profile


def test_imagenet_profile_is_the_papers_recipe():
    p = get_profile("imagenet")
    r = paper.RECIPE
    assert (p.batch_size, p.lr, p.momentum, p.weight_decay, p.dropout, p.epochs, p.crop) == (
        r["batch_size"],
        r["lr"],
        r["momentum"],
        r["weight_decay"],
        r["dropout"],
        r["epochs"],
        r["crop"],
    )
    assert p.width == 1.0 and p.max_decays == r["lr_decays"] and p.scale == 256


@pytest.mark.parametrize("name", list(PROFILES))
def test_profiles_round_trip_and_state_deviations(name):
    p = PROFILES[name]
    assert Profile.from_dict(json.loads(json.dumps(p.as_dict()))) == p
    assert p.deviations, "every profile says how it departs from the paper"
    assert p.deviations[len(p.deviations) - len(p.notes) :] == p.notes  # the notes come last
    rows = compare_with_paper(p)
    assert {r["setting"] for r in rows} >= {"batch size", "momentum", "weight decay", "epochs"}


def test_small_profiles_scale_sizes_by_crop():
    assert get_profile("tiny").scale == 37 and get_profile("cifar10").scale == (37, 73)
    assert get_profile("imagenette").scale == (146, 293)


def test_overrides_and_errors():
    assert get_profile("tiny", epochs=3, lr=None).epochs == 3
    with pytest.raises(ValueError, match="unknown profile 'huge'.*tiny, study, cifar10"):
        get_profile("huge")
    with pytest.raises(ValueError, match="unknown profile field"):
        get_profile("tiny", colour="red")


def test_scale_summary_names_the_budget():
    tiny = get_profile("tiny", epochs=6, limit_train=8000)
    assert tiny.scale_summary == "fashion-mnist, 32 px, width 0.25, 8,000 training images, 6 epochs"
    assert "all training images" in get_profile("imagenet").scale_summary


def test_deviations_follow_the_fields():
    tiny = get_profile("tiny")
    assert "a 16,000-image training subset" in tiny.deviations
    changed = get_profile("tiny", limit_train=4000, epochs=3, flip=False).deviations
    assert "a 4,000-image training subset" in changed
    assert "3 epochs at most instead of 74" in changed
    assert not any("16,000" in d for d in changed)
    assert "augmentation without flips" in changed
    assert "resolution: 32 px crops, S = [37, 73], every size scaled by 32/224" in (
        get_profile("cifar10").deviations
    )
    paper_like = get_profile("imagenet", amp=False, channels_last=False).deviations
    assert paper_like == (
        "lr plateaus read one in twelve training images held out for validation (the paper "
        "read ILSVRC's validation set, its test set); the test split is only reported",
        "lr patience 2 epoch(s) (the paper does not state one), counted once the net has left "
        "chance level: a stalled net keeps its learning rate",
    )


def test_fixed_lr_steps_replace_the_plateau_rule_in_the_deviations():
    study = get_profile("study", lr_steps=[8, 11])  # a JSON list, as papermill passes it
    assert study.lr_steps == (8, 11)
    assert (
        "lr divided by 10 after epoch 8 and 11 for every net, instead of at validation "
        "plateaus: every net ends its schedule within the budget"
    ) in study.deviations
    assert not any("patience" in d for d in study.deviations)
    schedule = {r["setting"]: r["this run"] for r in compare_with_paper(study)}["lr schedule"]
    assert schedule == "/10 after epochs 8, 11"
    old = {k: v for k, v in get_profile("study").as_dict().items() if k != "lr_steps"}
    assert Profile.from_dict(json.loads(json.dumps(old))) == get_profile("study")  # old records


@pytest.mark.parametrize("name", list(PROFILES))
def test_every_profile_is_valid(name):
    p = PROFILES[name]
    assert Profile(**{f.name: getattr(p, f.name) for f in dataclasses.fields(p)}) == p
    assert p.name == name


# One or more impossible values for every field, and the form each field expects.
IMPOSSIBLE = [
    ("name", "", "a non-empty string"),
    ("dataset", None, "a non-empty string"),
    ("num_classes", 0, "an integer >= 1"),
    ("num_classes", 10.0, "an integer >= 1"),
    ("crop", 0, "an integer >= 1"),
    ("crop", True, "an integer >= 1"),
    ("scale", 31, "S >= crop (32) as an integer or a range [Smin, Smax] with Smin <= Smax"),
    ("scale", [37], "S >= crop (32)"),
    ("scale", (73, 37), "S >= crop (32)"),
    ("scale", (16, 73), "S >= crop (32)"),
    ("scale", (37, 73, 100), "S >= crop (32)"),
    ("scale", "37", "S >= crop (32)"),
    ("width", "wide", "a positive finite number"),
    ("width", 0, "a positive finite number"),
    ("width", float("inf"), "a positive finite number"),
    ("batch_size", 0, "an integer >= 1"),
    ("batch_size", 32.0, "an integer >= 1"),
    ("lr", 0, "a positive finite number"),
    ("lr", float("nan"), "a positive finite number"),
    ("momentum", 1.0, "a number in [0, 1)"),
    ("momentum", -0.1, "a number in [0, 1)"),
    ("weight_decay", -1e-4, "a finite number >= 0"),
    ("dropout", 1, "a number in [0, 1)"),
    ("epochs", 0, "an integer >= 1"),
    ("epochs", True, "an integer >= 1"),
    ("epochs", 1.5, "an integer >= 1"),
    ("patience", -1, "an integer >= 0"),
    ("max_decays", -1, "an integer >= 0"),
    ("lr_steps", (8, 8), "increasing epochs >= 1"),
    ("lr_steps", (0, 3), "increasing epochs >= 1"),
    ("lr_steps", 8, "increasing epochs >= 1"),
    ("init", 3, "a non-empty string"),
    ("limit_train", -1, "none or an integer >= 0"),
    ("val_images", 64.0, "none (1/12 of train) or an integer >= 1"),
    ("workers", -1, "an integer >= 0"),
    ("flip", 1, "true or false"),
    ("pca_lighting", "yes", "true or false"),
    ("pixel_scale", 0, "a positive finite number"),
    ("amp", None, "true or false"),
    ("channels_last", 0, "true or false"),
    ("batch_augment", "no", "true or false"),
    ("notes", "one note", "a tuple of strings"),
    ("notes", ("ok", 3), "a tuple of strings"),
]


@pytest.mark.parametrize(("field", "value", "expected"), IMPOSSIBLE)
def test_an_impossible_field_is_refused_in_one_line(field, value, expected):
    message = f"profile field {field}: expected {expected}"
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        PROFILES["tiny"].replace(**{field: value})
    assert str(raised.value).endswith(f", got {value!r}") and "\n" not in str(raised.value)


def test_every_field_has_an_impossible_value():
    assert {field for field, _, _ in IMPOSSIBLE} == {f.name for f in dataclasses.fields(Profile)}


def test_possible_edge_values_pass():
    tiny = get_profile("tiny")
    assert tiny.replace(scale=[32, 32]).scale == (32, 32)  # a JSON list becomes a tuple
    assert tiny.replace(notes=["a"]).notes == ("a",)
    assert tiny.replace(limit_train=0, val_images=None).limit_train == 0  # 0: the whole split
    assert tiny.replace(momentum=0, dropout=0.0, weight_decay=0, patience=0).dropout == 0
    assert tiny.replace(width=2, lr=1).width == 2
    with pytest.raises(ValueError, match="unknown profile field"):
        tiny.replace(colour="red", epochs=0)
