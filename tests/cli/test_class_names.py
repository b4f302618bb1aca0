"""A model and a labelled dataset are paired class by class by name, never by position:
names that differ are refused in one line (exit 3) unless mapped with --class-map, and
names are compared in Unicode NFC."""

import unicodedata

import pytest

import tiny_models
from conftest import run_cli


@pytest.fixture(scope="module")
def brightness_model(tmp_path_factory):
    """A model whose class 0, "nuit", is a dark image and class 1, "café", a bright one
    (its names in this order, not sorted: a positional match would swap them)."""
    return tiny_models.brightness_model(tmp_path_factory.mktemp("model") / "brightness.keras")


dataset = tiny_models.dark_and_bright


def evaluate(capsys, model, data, *flags):
    return run_cli(capsys, "evaluate", str(model), "--dataset", str(data), *flags)


def test_classes_are_matched_by_name_not_by_sorted_position(brightness_model, tmp_path,
                                                            capsys):
    # sorted, the data's classes are café, nuit: the model's in the other order
    data = dataset(tmp_path / "d", dark="nuit", bright="café")
    code, out, err = evaluate(capsys, brightness_model, data)
    assert code == 0, err
    assert "test accuracy 100.00%" in out


def test_names_in_another_unicode_form_are_the_same_class(brightness_model, tmp_path, capsys):
    data = dataset(tmp_path / "d", dark="nuit", bright=unicodedata.normalize("NFD", "café"))
    code, out, err = evaluate(capsys, brightness_model, data)
    assert code == 0 and "test accuracy 100.00%" in out, err


def test_differing_names_are_refused_listing_both_sides(brightness_model, tmp_path, capsys):
    data = dataset(tmp_path / "d", dark="Nuit", bright="café")
    code, out, err = evaluate(capsys, brightness_model, data)
    lines = err.strip().splitlines()
    assert code == 3 and len(lines) == 1 and "Traceback" not in out + err, err
    assert "only in the model: 'nuit'; only in the data: 'Nuit'" in lines[0]
    assert "--class-map Nuit=nuit" in lines[0] and "test accuracy" not in out


def test_class_map_pairs_names_explicitly(brightness_model, tmp_path, capsys):
    data = dataset(tmp_path / "d", dark="dark", bright="bright")
    code, out, err = evaluate(capsys, brightness_model, data, "--class-map", "dark=nuit",
                              "--class-map", "bright=café")
    assert code == 0 and "test accuracy 100.00%" in out, err
    code, out, err = evaluate(capsys, brightness_model, data, "--class-map", "dark=day")
    assert code == 2 and "--class-map maps to 'day', not a class of the model" in err
    assert len(err.strip().splitlines()) == 1


def test_lookalike_names_are_shown_with_their_code_points(brightness_model, tmp_path, capsys):
    data = dataset(tmp_path / "d", dark="nuit", bright="caf\u0435")  # a Cyrillic e
    code, _, err = evaluate(capsys, brightness_model, data)
    assert code == 3 and r"('caf\u0435')" in err and r"('caf\xe9')" in err, err


def test_two_class_folders_in_two_unicode_forms_are_refused(tmp_path):
    from kvt.data import folder
    from kvt.errors import DataError

    root = dataset(tmp_path / "d", dark="nuit", bright="café")
    (root / "train" / unicodedata.normalize("NFD", "café")).mkdir()
    with pytest.raises(DataError, match=r"two class folders named 'café', written "
                                        r"'caf\\xe9' and 'cafe\\u0301'"):
        folder.list_files(root)


def test_export_checks_on_classes_matched_by_name(brightness_model, tmp_path, capsys):
    data = dataset(tmp_path / "d", dark="dark", bright="café")
    out = tmp_path / "sm"
    argv = ["export", str(brightness_model), "--format", "saved_model", "--dataset",
            str(data), "--out", str(out)]
    code, _, err = run_cli(capsys, *argv)
    assert code == 3 and "only in the model: 'nuit'; only in the data: 'dark'" in err
    assert not out.exists()
    code, stdout, err = run_cli(capsys, *argv, "--class-map", "dark=nuit")
    assert code == 0, err
    assert "returns 2 class probabilities: nuit, café" in stdout
    assert "accuracy 100.00% (Keras 100.00%" in stdout, stdout
