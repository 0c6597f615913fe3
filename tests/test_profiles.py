import json

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
    assert get_profile("imagenette").test_scale == (146 + 293) // 2


def test_overrides_and_errors():
    assert get_profile("tiny", epochs=3, lr=None).epochs == 3
    with pytest.raises(ValueError, match="unknown profile 'huge'.*tiny, cifar10"):
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
    assert paper_like == ("lr patience 2 epoch(s) (the paper does not state one)",)
