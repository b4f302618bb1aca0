"""Limits asked of the model family: each registered family states its smallest image
side (what its 2x2 poolings leave a pixel of); a user's builder states none."""

import pytest

from kvt.errors import UsageError
from kvt.models import BUILTIN_MODELS, check_image_size, get_model, min_side


def test_each_family_states_its_own_smallest_side():
    assert min_side("minivggnet") == 4  # two poolings
    assert min_side("quicknet") == 8  # three
    for name in BUILTIN_MODELS:
        for api in ("keras", "tf"):
            assert min_side(name, api) == get_model(name, api).MIN_SIDE >= 1
    assert min_side("examples.resnet_small:build") is None


@pytest.mark.parametrize("model, side, words", [
    ("minivggnet", 3, "image_size must be at least 4 for minivggnet (minivggnet halves the "
                      "image twice with 2x2 pooling), got 3"),
    ("quicknet", 4, "image_size must be at least 8 for quicknet (quicknet halves the image "
                    "three times with 2x2 pooling), got 4"),
    ("quicknet", 7, "image_size must be at least 8 for quicknet"),
])
def test_an_image_size_below_the_familys_side_is_refused_naming_the_family(model, side,
                                                                          words):
    with pytest.raises(UsageError) as raised:
        check_image_size(model, "keras", side)
    assert str(raised.value).startswith(words)
    assert raised.value.flag_message.startswith("--" + words.replace("image_size", "image-size"))


def test_sides_the_family_takes_and_user_builders_pass():
    check_image_size("minivggnet", "keras", 4)  # what QuickNet refuses
    check_image_size("quicknet", "tf", 8)
    check_image_size("quicknet", "keras", None)  # the dataset's own size: build_model's
    check_image_size("examples.resnet_small:build", "keras", 1)  # its build reports
