import json
import math
import re

import pytest

from kvt.config import TrainConfig
from kvt.errors import ModelError, UsageError
from kvt.recipes import RECIPES, from_recipe


def test_seed_recipe_is_the_tutorials():
    c = from_recipe("seed")
    assert (c.epochs, c.batch_size, c.lr, c.momentum) == (30, 32, 0.01, 0.0)
    assert c.decay is None and math.isclose(c.resolved_decay, 0.01 / 30)
    assert c.recipe == "seed" and RECIPES["seed"]["epochs"] == 30


def test_overrides_apply_and_none_keeps_recipe_value():
    c = from_recipe("seed", epochs=5, batch_size=None, lr=0.1)
    assert (c.epochs, c.batch_size, c.lr) == (5, 32, 0.1)


def test_json_round_trip():
    c = from_recipe("seed", api="tf", activation="crelu", seed=3, train_limit=100)
    assert TrainConfig.from_json(c.to_json()) == c


@pytest.mark.parametrize("field, value, words", [
    ("epochs", 0, "epochs must be a positive integer"),
    ("epochs", -3, "epochs must be a positive integer"),
    ("batch_size", 0, "batch_size must be a positive integer"),
    ("lr", 0.0, "lr must be a finite number > 0"),
    ("lr", float("nan"), "lr must be a finite number"),
    ("lr", float("inf"), "lr must be a finite number"),
    ("decay", -1.0, "decay must be a finite number >= 0"),
    ("momentum", 1.0, "momentum must be a finite number >= 0.0 and < 1.0"),
    ("seed", -1, "seed must be an integer from 0 to 4294967295"),
    ("seed", 2**32, "seed must be an integer from 0 to 4294967295 "),
    ("image_size", 0, "image_size must be a positive integer"),
    ("image_size", 1025, "image_size must be at most 1024"),
    ("api", "theano", "unknown api 'theano'"),
    ("backend", "cntk", "unknown backend 'cntk'"),
    ("train_limit", 0, "train_limit must be a positive integer"),
])
def test_nonsense_values_are_refused_by_name(field, value, words):
    with pytest.raises(UsageError, match="^" + re.escape(words)):  # the field, no flag
        from_recipe("seed", **{field: value})


def test_limits_are_inclusive():
    c = from_recipe("seed", seed=2**32 - 1, image_size=4)
    assert (c.seed, c.image_size) == (2**32 - 1, 4)
    assert from_recipe("seed", image_size=1024).image_size == 1024
    assert from_recipe("seed", seed=0).seed == 0


def test_unknown_activation_lists_known_ones():
    with pytest.raises(ModelError, match="unknown activation 'sigmoidal'.*relu, crelu"):
        TrainConfig(activation="sigmoidal")


def test_tf_api_needs_tensorflow_backend():
    with pytest.raises(UsageError, match="^api tf .* needs backend tensorflow"):
        TrainConfig(api="tf", backend="jax")


def test_unknown_recipe_and_unknown_keys():
    with pytest.raises(UsageError, match="unknown recipe 'fastest'"):
        from_recipe("fastest")
    with pytest.raises(UsageError, match=r"unknown config keys \['colour'\]"):
        TrainConfig.from_dict({"colour": "red"})


def test_train_config_flag_starts_from_a_saved_config(tmp_path, capsys):
    import json

    from kvt.cli import build_parser
    from kvt.cli.common import config_from_args
    from kvt.errors import KvtError

    saved = tmp_path / "config.json"
    saved.write_text(json.dumps({"config": from_recipe(
        dataset="digits", epochs=3, lr=0.05, activation="crelu").to_dict()}))
    args = build_parser().parse_args(["train", "--config", str(saved), "--seed", "7"])
    c = config_from_args(args)
    assert (c.dataset, c.epochs, c.lr, c.activation, c.seed) == ("digits", 3, 0.05, "crelu", 7)
    args = build_parser().parse_args(["train", "--config", str(saved), "--recipe", "seed"])
    c = config_from_args(args)  # the recipe resets hyperparameters, not the dataset
    assert (c.dataset, c.epochs, c.lr, c.activation) == ("digits", 30, 0.01, "crelu")
    for text in ("[1, 2]", "{not json", '{"config": {"colour": "red"}}'):
        saved.write_text(text)
        with pytest.raises(KvtError, match="--config|unknown config keys"):
            config_from_args(build_parser().parse_args(["train", "--config", str(saved)]))


@pytest.mark.parametrize("epochs", [1, 3, 30, 100])
def test_seed_recipe_decay_follows_the_tutorials_formula(epochs):
    c = from_recipe("seed", epochs=epochs)
    assert c.resolved_decay == pytest.approx(0.01 / epochs)
    assert from_recipe("seed", epochs=epochs, lr=0.1).resolved_decay == \
        pytest.approx(0.1 / epochs)


def test_explicit_decay_wins_and_zero_means_none():
    assert from_recipe("seed", epochs=3, decay=0.001).resolved_decay == 0.001
    assert from_recipe("seed", epochs=3, decay=0.0).resolved_decay == 0.0


def test_saved_config_reloads_to_the_same_decay_and_follows_new_epochs(tmp_path):
    from kvt.cli import build_parser
    from kvt.cli.common import config_from_args

    for decay, after_epochs_5 in ((None, 0.01 / 5), (0.002, 0.002)):
        saved = tmp_path / "config.json"
        c = from_recipe(dataset="digits", epochs=3, decay=decay)
        saved.write_text(json.dumps({"config": c.to_dict()}))
        again = TrainConfig.load(saved)
        assert again == c and again.resolved_decay == c.resolved_decay
        args = build_parser().parse_args(["train", "--config", str(saved), "--epochs", "5"])
        assert config_from_args(args).resolved_decay == pytest.approx(after_epochs_5)


def test_fast_recipe_is_complete_and_resets_what_the_seed_recipe_sets():
    """Each recipe names every recipe field, so that `--config RUN --recipe R` (which
    applies a recipe over a saved config) leaves nothing of the other recipe behind."""
    assert set(RECIPES["fast"]) == set(RECIPES["seed"])
    fast = from_recipe("fast")
    assert (fast.schedule, fast.augment, fast.nesterov) == ("warmup-cosine", "flip-translate",
                                                            True)
    assert fast.resolved_decay == 0.0  # the schedule sets the learning rate, not decay
    seed = TrainConfig.from_dict({**fast.to_dict(), **RECIPES["seed"], "recipe": "seed"})
    assert seed == from_recipe("seed")


@pytest.mark.parametrize("overrides, words", [
    ({"schedule": "step"}, "unknown schedule 'step': choose one of keras2, warmup-cosine"),
    ({"augment": "mixup"}, "unknown augment 'mixup': choose one of none, flip, flip-translate"),
    ({"tta": "crops"}, "unknown tta 'crops': choose one of none, flip"),
    ({"schedule": "warmup-cosine", "decay": 0.01}, "decay 0.01 is Keras 2's decay"),
    ({"schedule": "warmup-cosine", "epochs": 2, "warmup_epochs": 3.0},
     "warmup_epochs 3 is longer than the 2 epochs of training"),
    ({"warmup_epochs": 1.0}, "warmup_epochs applies to schedule warmup-cosine"),
    ({"weight_decay": -1e-4}, "weight_decay must be a finite number >= 0.0 and < 1.0"),
    ({"label_smoothing": 1.0}, "label_smoothing must be a finite number >= 0.0 and < 1.0"),
    ({"warmup_epochs": float("nan")}, "warmup_epochs must be a finite number"),
])
def test_nonsense_recipe_fields_are_refused_by_name(overrides, words):
    with pytest.raises(UsageError, match="^" + re.escape(words)):
        TrainConfig(**overrides)


def test_every_config_field_has_a_json_type_to_check():
    """A field added to TrainConfig without a kind would crash the config-file check
    (KeyError) instead of checking it."""
    import dataclasses

    from kvt.config import FIELD_KINDS, TrainConfig

    assert {f.name for f in dataclasses.fields(TrainConfig)} == set(FIELD_KINDS)


# One value per field that its JSON type allows but the field does not.
NONSENSE = {"api": "theano", "backend": "cntk", "precision": "fp16", "schedule": "step",
            "augment": "mixup", "tta": "crops", "distribute": "multi-worker", "channels": 2,
            "epochs": 0, "batch_size": -1, "steps_per_execution": 0,
            "train_limit": 0, "test_limit": 0, "devices": 0, "image_size": 2048,
            "val_split": 1.0, "lr": 0.0, "decay": -1.0, "momentum": 1.0,
            "warmup_epochs": -1.0, "weight_decay": 1.0, "label_smoothing": -0.1, "seed": -1}


def test_every_checked_field_has_a_nonsense_value_here():
    from kvt.config import CHOICES, COUNTS, RANGES

    assert {*CHOICES, *COUNTS, *RANGES, "channels", "seed"} == set(NONSENSE)


@pytest.mark.parametrize("field", sorted(NONSENSE))
def test_a_field_error_names_the_config_field_and_carries_the_flag(field):
    """The library says `batch_size`; the same sentence with `--batch-size` waits in
    `flag_message` for the CLI (kvt.cli.main prints it)."""
    from kvt.config import flag
    from kvt.errors import KvtError

    with pytest.raises(KvtError) as raised:
        TrainConfig(**{field: NONSENSE[field]})
    message, flags = str(raised.value), raised.value.flag_message
    assert re.search(rf"(^|unknown ){field} ", message), message
    assert flag(field) not in message and flag(field) in flags
    assert flags.replace(flag(field), field) == message


def test_a_combination_error_names_every_field_it_involves():
    with pytest.raises(UsageError) as raised:
        TrainConfig(schedule="warmup-cosine", decay=0.01)
    assert str(raised.value) == ("decay 0.01 is Keras 2's decay, part of schedule keras2; "
                                 "schedule warmup-cosine sets the learning rate itself: drop "
                                 "decay or set decay 0")
    assert raised.value.flag_message.startswith("--decay 0.01 is Keras 2's decay, part of "
                                                "--schedule keras2; --schedule warmup-cosine")
    with pytest.raises(UsageError) as raised:
        TrainConfig(api="tf", backend="jax")
    assert "--" not in str(raised.value)
    assert "--api tf" in raised.value.flag_message
    assert "needs --backend tensorflow (got --backend jax)" in raised.value.flag_message


def test_the_image_side_is_capped_but_its_minimum_is_the_model_familys():
    """TrainConfig knows no family's poolings: a side of 1 passes here and is refused by
    kvt.models.check_image_size (tests/models/test_registry.py)."""
    assert TrainConfig(image_size=1).image_size == 1
    assert TrainConfig(model="quicknet", image_size=4).image_size == 4
