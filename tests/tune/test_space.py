"""The --search syntax: every parameter reads back as itself, and every bad range is one
UsageError (exit 2) naming the --search and what to do."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvt.errors import EXIT_USAGE, UsageError
from kvt.recipes import from_recipe
from kvt.tune.space import (FIELD_TYPES, NOT_SEARCHABLE, SEARCHABLE, Param, check_against,
                            parse_search, parse_space)

FLOATS = [n for n in SEARCHABLE if FIELD_TYPES[n] == "float"]
INTS = [n for n in SEARCHABLE if FIELD_TYPES[n] == "int"]
STRS = [n for n in SEARCHABLE if FIELD_TYPES[n] == "str"]
finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


@st.composite
def float_params(draw):
    name = draw(st.sampled_from(FLOATS))
    kind = draw(st.sampled_from(["uniform", "log"]))
    low = draw(finite.filter(lambda x: x > 0) if kind == "log" else finite)
    high = draw(finite.filter(lambda x: x > low))
    return Param(name, kind, low, high)


@st.composite
def int_params(draw):
    name = draw(st.sampled_from(INTS))
    kind = draw(st.sampled_from(["int", "log"]))
    low = draw(st.integers(1 if kind == "log" else -10**6, 10**6))
    return Param(name, kind, low, draw(st.integers(low + 1, low + 10**6)))


words = st.text(st.characters(whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters="_-."),
                min_size=1, max_size=12)


@st.composite
def cat_params(draw):
    name = draw(st.sampled_from(STRS + INTS + FLOATS))
    values = {"str": words, "int": st.integers(-10**6, 10**6), "float": finite}
    choices = draw(st.lists(values[FIELD_TYPES[name]], min_size=1, max_size=5, unique=True))
    if FIELD_TYPES[name] == "float":  # 0.0 and -0.0 are one value
        choices = list({c + 0.0: c + 0.0 for c in choices}.values())
    return Param(name, "cat", choices=tuple(choices))


@settings(max_examples=200, deadline=None)
@given(st.one_of(float_params(), int_params(), cat_params()))
def test_every_param_reads_back_as_itself(param):
    assert parse_search(param.text) == param
    assert parse_search(param.text).text == param.text


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(FLOATS), finite, finite, st.sampled_from(["", "log:"]))
def test_an_empty_or_inverted_range_is_refused(name, a, b, prefix):
    low, high = max(a, b), min(a, b)  # high <= low
    text = f"{name.replace('_', '-')}={prefix}{low!r}:{high!r}"
    with pytest.raises(UsageError) as e:
        parse_search(text)
    assert str(e.value).startswith(f"--search {text}: ")
    assert e.value.exit_code == EXIT_USAGE
    if prefix and low > 0:
        assert "empty" in str(e.value) or "inverted" in str(e.value)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(FLOATS), finite.filter(lambda x: x <= 0), st.floats(0.001, 10))
def test_a_log_range_must_stay_above_zero(name, low, width):
    text = f"{name.replace('_', '-')}=log:{low!r}:{low + width!r}"
    with pytest.raises(UsageError, match="log range must be above 0"):
        parse_search(text)


@pytest.mark.parametrize("text, words", [
    ("lr", "write FLAG=SPEC"),
    ("=log:0.1:1", "write FLAG=SPEC"),
    ("lr=", "write FLAG=SPEC"),
    ("learning-rate=log:0.01:1", "unknown flag --learning-rate: searchable flags are"),
    ("lr=0.1:0.1", "the range is empty"),
    ("lr=1:0.1", "the range is inverted"),
    ("lr=log:0:1", "log range must be above 0"),
    ("lr=log:-1:1", "log range must be above 0"),
    ("lr=log:0.01", "a range is LOW:HIGH"),
    ("lr=0.1:nan", "not a finite number"),
    ("lr=int:1:4", "takes any number"),
    ("epochs=1:4", "write epochs=int:1:4"),
    ("epochs=int:1.5:4", "not a whole number"),
    ("activation=relu:crelu", "list them with cat:"),
    ("activation=cat:", "comma-separated list"),
    ("activation=cat:relu,,crelu", "comma-separated list"),
    ("activation=cat:relu,relu", "listed twice"),
    ("nesterov=cat:true,maybe", "true or false"),
    ("val-split=0.05:0.2", "cannot be searched: the holdout is what every trial is judged on"),
    ("seed=int:0:10", "cannot be searched: choosing a seed selects on luck"),
    ("test-limit=int:10:100", "cannot be searched"),
])
def test_bad_search_is_one_line(text, words):
    with pytest.raises(UsageError) as e:
        parse_search(text)
    assert words in str(e.value) and "\n" not in str(e.value)
    assert e.value.exit_code == EXIT_USAGE


def test_flags_are_spelled_either_way_and_once():
    assert parse_search("--weight-decay=log:1e-5:1e-3") == \
        parse_search("weight_decay=log:1e-5:1e-3")
    with pytest.raises(UsageError, match="--lr is given twice"):
        parse_space(["lr=log:0.01:1", "lr=0.1:0.2"])
    with pytest.raises(UsageError, match="at least one --search"):
        parse_space([])


def test_every_config_field_is_searchable_or_refused_with_a_reason():
    assert set(SEARCHABLE) | set(NOT_SEARCHABLE) | {"recipe"} == set(FIELD_TYPES)
    assert not set(SEARCHABLE) & set(NOT_SEARCHABLE)


def test_bounds_kvt_train_would_refuse_are_refused_before_any_trial():
    base = from_recipe("seed", dataset="digits")
    check_against(parse_space(["lr=log:0.01:1", "epochs=int:1:4"]), base)
    with pytest.raises(UsageError, match=r"--search label-smoothing=0.0:1.0: 1.0 is not a "
                                         r"valid --label-smoothing"):
        check_against([parse_search("label-smoothing=0:1")], base)
    with pytest.raises(UsageError, match="0.0 is not a valid --lr"):
        check_against([parse_search("lr=0:1")], base)


def test_distributions_match_the_syntax():
    lr = parse_search("lr=log:0.01:1").distribution()
    assert lr.log and math.isclose(lr.low, 0.01) and lr.high == 1.0
    epochs = parse_search("epochs=int:1:4").distribution()
    assert (epochs.low, epochs.high, epochs.log) == (1, 4, False)
    assert parse_search("activation=cat:relu,crelu").distribution().choices == ("relu", "crelu")
