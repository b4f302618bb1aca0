"""Class names: how a model's classes are matched with a labelled dataset's.

A model and a dataset are paired class by class by NAME, never by position: a model
trained on `cat, dog` judged on folders `cat, Dog` would otherwise score the dogs
against whatever class sorts second. Names are compared in Unicode NFC, so the same name
written in two normal forms (macOS writes `café` as `cafe` + a combining accent, most
other systems as one `é`) is one class. A name that does not match is refused unless the
user maps it (`--class-map DATA=MODEL`).
"""

from __future__ import annotations

import unicodedata

from kvt.errors import DataError, UsageError


def nfc(name: str) -> str:
    """`name` in Unicode normal form C, the form names are compared in."""
    return unicodedata.normalize("NFC", str(name))


def show(name: str) -> str:
    """`name` quoted for a message; with its code points escaped where it is not plain
    ASCII, so that two names that look alike can be told apart."""
    text = repr(name)
    return text if name.isascii() else f"{text} ({ascii(name)})"


def parse_class_map(items: list[str] | None) -> dict[str, str]:
    """`--class-map DATA=MODEL` items as {data name: model name}, both in NFC."""
    mapping: dict[str, str] = {}
    for item in items or []:
        data, sep, model = item.partition("=")
        if not sep or not data or not model:
            raise UsageError(f"--class-map {item!r}: write DATA_CLASS=MODEL_CLASS (for example "
                             f"--class-map Dog=dog)")
        if nfc(data) in mapping:
            raise UsageError(f"--class-map maps {show(data)} twice: give each data class once")
        mapping[nfc(data)] = nfc(model)
    return mapping


def match_classes(model_names: list[str], data_names: list[str], data: str,
                  class_map: dict[str, str] | None = None, verb: str = "evaluate") -> list[int]:
    """For each class of the dataset (named `data`), the index of the model's class of
    the same name (after `class_map`). Raises `DataError` listing the names only in the
    model and only in the data, and `UsageError` for a map that names unknown classes."""
    class_map = class_map or {}
    model = [nfc(n) for n in model_names]
    names = [nfc(n) for n in data_names]
    unknown = [d for d in class_map if d not in names]
    if unknown:
        raise UsageError(f"--class-map names {', '.join(map(show, unknown))}, not a class of "
                         f"{data} (its classes: {', '.join(map(show, names))})")
    wrong = [m for m in class_map.values() if m not in model]
    if wrong:
        raise UsageError(f"--class-map maps to {', '.join(map(show, wrong))}, not a class of "
                         f"the model (its classes: {', '.join(map(show, model))})")
    mapped = [class_map.get(n, n) for n in names]
    twice = sorted({m for m in mapped if mapped.count(m) > 1})
    if twice:
        raise UsageError(f"--class-map leaves two classes of {data} named "
                         f"{', '.join(map(show, twice))}: map each data class to its own "
                         f"model class")
    only_model = [n for n in model if n not in mapped]
    only_data = [n for n, m in zip(names, mapped) if m not in model]
    if only_model or only_data:
        example = (f" (for example --class-map {only_data[0]}={only_model[0]})"
                   if only_model and only_data else "")
        raise DataError(
            f"the model's classes and {data}'s differ (only in the model: "
            f"{', '.join(map(show, only_model)) or 'none'}; only in the data: "
            f"{', '.join(map(show, only_data)) or 'none'}): {verb} on data with the model's "
            f"classes, or map differently named classes with --class-map DATA=MODEL"
            f"{example}")
    return [model.index(m) for m in mapped]
