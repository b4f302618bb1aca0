"""The named recipes: plain dicts of TrainConfig fields, each under its measured header."""

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from kvt import recipes
from kvt.config import FIELD_KINDS, TrainConfig, check_field
from kvt.recipes import RECIPES, from_recipe

# The hyperparameters every recipe sets, so that switching recipe never keeps one of the
# previous recipe's values (docs: `--recipe` sets these, `--config` the rest).
HYPERPARAMETERS = {"epochs", "batch_size", "lr", "decay", "momentum", "nesterov", "schedule",
                   "warmup_epochs", "weight_decay", "label_smoothing", "augment", "tta"}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_a_recipe_is_a_plain_dict_of_config_fields(name):
    recipe = RECIPES[name]
    assert type(recipe) is dict
    assert HYPERPARAMETERS <= set(recipe) <= HYPERPARAMETERS | {"model"}
    assert set(recipe) <= set(FIELD_KINDS)
    for field, value in recipe.items():
        assert value is None or type(value) in (bool, int, float, str), (field, value)
        check_field(field, value)  # each value is one the config takes on its own
    config = from_recipe(name)
    assert config.recipe == name
    assert {f: getattr(config, f) for f in recipe} == recipe


def test_the_seed_recipe_is_the_configs_defaults():
    defaults = TrainConfig()
    assert {f: getattr(defaults, f) for f in RECIPES["seed"]} == RECIPES["seed"]
    assert from_recipe() == defaults == from_recipe("seed")


def test_from_recipe_applies_overrides_and_refuses_unknown_names():
    assert from_recipe("fast", epochs=3, lr=None).epochs == 3
    assert from_recipe("fast", lr=None).lr == RECIPES["fast"]["lr"]
    with pytest.raises(Exception, match="unknown recipe 'turbo': choose one of fast, "
                                        "fast-cpu, seed"):
        from_recipe("turbo")


def test_every_recipe_has_a_two_line_measured_header():
    """The comment above each recipe's dict states the figure (accuracy, n), the hardware,
    the date and where the files are (results/, or why not), as airbench's headers do."""
    source = Path(recipes.__file__).read_text()
    lines = source.splitlines()
    names = {"seed": "SEED", "fast": "FAST", "fast-cpu": "FAST_CPU"}
    assert set(names) == set(RECIPES)
    tree = ast.parse(source)
    assigned = {node.target.id: node.lineno for node in tree.body
                if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}
    for name, constant in names.items():
        assert RECIPES[name] is getattr(recipes, constant)
        header = []
        for line in reversed(lines[:assigned[constant] - 1]):
            if not line.startswith("#"):
                break
            header.insert(0, line)
        text = " ".join(header)
        assert len(header) >= 2, (name, header)
        assert re.search(r"\d+\.\d+ \+- \d+\.\d+% test accuracy", text), name
        assert re.search(r"\(n=\d\)", text) and re.search(r"2026-\d\d-\d\d", text), name
        assert "results/" in text and re.search(r"EPYC|H100|Xeon", text), name


def test_config_holds_no_recipes():
    """(That config does not import recipes is test_package_layout's: it sits below.)"""
    import kvt.config

    assert not hasattr(kvt.config, "RECIPES")
    assert not hasattr(TrainConfig, "from_recipe")
    assert {f.name for f in dataclasses.fields(TrainConfig)} >= set(RECIPES["fast-cpu"])
