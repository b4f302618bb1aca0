"""Your own model: `--model module.path:function` (or `path/to/file.py:function`).

`function(input_shape, classes, **options)` returns an uncompiled Keras model; kvt
compiles and trains it with the recipe, as it does its own families. Of the options a kvt
family takes, `activation` and `native_ops` are passed only when the function accepts
them (by name or through `**kwargs`); a non-default value the function cannot take is
refused with the reason rather than silently ignored.

The function is found as `--activation module:function` finds its function
(`kvt.layers.resolve_function`): a module on `PYTHONPATH` or, as `python -m` does, in the
current folder. A file path is turned into that module path (`examples/resnet_small.py`
-> `examples.resnet_small`), so the run records one import path whatever was typed, with
the SHA-256 of the module's source file. The saved model.keras does not need the module
to load when it holds only standard and registered layers; `needed_import` names the
`--import` a model of the module's own layers needs.

Checks that need no framework (`check_spec`) run in the parent of a sweep or a bench;
the rest (`build`) when the model is built, before any training.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable

from kvt.errors import ModelError

# "pkg.mod:function" or "some/dir/file.py:function".
_SPEC = re.compile(r"^(?P<where>[^:]+):(?P<function>[A-Za-z_]\w*)$")
# The defaults of kvt's families: a function that cannot take an option accepts its default.
OPTION_DEFAULTS = {"activation": "relu", "native_ops": False}


def is_user_model(name: str) -> bool:
    """Whether `--model name` names a function rather than a registered family."""
    return ":" in name


def split_spec(spec: str) -> tuple[str, str]:
    """"module.path:function" (a file path turned into its module path), and the
    folder to put on sys.path for it (or "" for none)."""
    match = _SPEC.match(spec)
    if not match:
        raise ModelError(f"--model {spec!r} is neither a kvt family nor module.path:function: "
                         f"name your builder as mypkg.models:build or path/to/file.py:build")
    where, function = match["where"], match["function"]
    if where.endswith(".py") or "/" in where or os.sep in where:
        path = Path(where).expanduser()
        if path.suffix != ".py":
            raise ModelError(f"--model {spec}: {where} is not a .py file: name the file of "
                             f"your builder, or its module path")
        if not path.is_file():
            raise ModelError(f"--model {spec}: {where} does not exist: check the path")
        path = path.resolve()
        cwd = Path.cwd().resolve()
        try:  # under the current folder: the module path from there (a package's import)
            parts = path.with_suffix("").relative_to(cwd).parts
            return ".".join(parts) + ":" + function, str(cwd)
        except ValueError:  # elsewhere: its folder on sys.path, the file's stem the module
            return f"{path.stem}:{function}", str(path.parent)
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", where):
        raise ModelError(f"--model {spec}: {where!r} is not a module path: write "
                         f"mypkg.models:build or path/to/file.py:build")
    return f"{where}:{function}", ""


def import_path(spec: str) -> str:
    """The "module.path:function" that `spec` names (a file path turned into it)."""
    return split_spec(spec)[0]


def _search_path(folder: str) -> None:
    # `python -m kvt` puts the current folder first on sys.path, the `kvt` script does not;
    # the same --model works with both (and in a sweep's runs, which start in this folder).
    for entry in (folder, str(Path.cwd())):
        if entry and entry not in sys.path and str(Path(entry).resolve()) not in sys.path:
            sys.path.append(entry)


def check_spec(spec: str) -> str:
    """Finds the builder's module and function without running them (no framework is
    imported): its source must exist, parse, and define `function` at the top level.
    Returns the import path. For the parent of a sweep or bench, before anything runs."""
    import ast
    import importlib.util

    path, folder = split_spec(spec)
    _search_path(folder)
    module, function = path.split(":")
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError) as e:
        found, reason = None, str(e)
    else:
        reason = "not found"
    if found is None or not found.origin or not Path(found.origin).is_file():
        raise ModelError(f"--model {spec}: cannot import module {module!r} ({reason}): run "
                         f"kvt from the folder that holds it or add that folder to PYTHONPATH")
    try:
        tree = ast.parse(Path(found.origin).read_bytes(), found.origin)
    except (SyntaxError, ValueError, OSError) as e:
        raise ModelError(f"--model {spec}: module {module!r} does not import ({e}): fix "
                         f"{found.origin}") from None
    names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    names |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
              if isinstance(t, ast.Name)}
    names |= {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom)
              for a in n.names}
    if function not in names:
        raise ModelError(f"--model {spec}: module {module!r} defines no {function!r}: "
                         f"name a function of {found.origin}")
    return path


def resolve(spec: str) -> Callable:
    """Imports the builder `spec` names; `ModelError` saying why not."""
    path, folder = split_spec(spec)
    _search_path(folder)
    module_name, function = path.split(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # the user's module: any error in it is theirs to fix
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelError(f"--model {spec}: module {module_name!r} does not import "
                         f"({type(e).__name__}: {first}): fix it, or check that it is on "
                         f"PYTHONPATH or in the current folder") from None
    builder = getattr(module, function, None)
    if builder is None:
        raise ModelError(f"--model {spec}: module {module_name!r} has no function "
                         f"{function!r}: name one of its functions after the colon")
    if not callable(builder) or inspect.isclass(builder):
        raise ModelError(f"--model {spec}: {function} is not a function: name a function "
                         f"build(input_shape, classes, **options) that returns a Keras model")
    return builder


def options_for(spec: str, builder: Callable, activation: str,
                native_ops: bool) -> dict[str, Any]:
    """The kvt options `builder` takes; refuses a non-default one it cannot take."""
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):  # a builtin or C function: call it as documented
        params = {}
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    wanted = {"activation": activation, "native_ops": native_ops}
    options = {}
    for name, value in wanted.items():
        if takes_all or name in params:
            options[name] = value
        elif value != OPTION_DEFAULTS[name]:
            flag = "--native-ops" if name == "native_ops" else f"--activation {value}"
            raise ModelError(f"{flag} cannot be applied: {import_path(spec)} takes no "
                             f"{name!r} argument; add `{name}=...` to its parameters, or "
                             f"drop {flag.split()[0]}")
    return options


def check(spec: str, api: str, activation: str, native_ops: bool) -> Callable:
    """Everything about `--model spec` that can be checked before the data is loaded:
    the API, the module, the function and the options it takes. Returns the builder."""
    if api != "keras":
        raise ModelError(f"--api {api} picks kvt's tf.keras variant of its own families; "
                         f"{import_path(spec)} builds the model it builds: drop --api {api}")
    builder = resolve(spec)
    options_for(spec, builder, activation, native_ops)
    return builder


def build(spec: str, api: str, input_shape, num_classes: int, activation: str,
          native_ops: bool):
    """Calls the builder and checks what it returns: a Keras model taking `input_shape`
    and giving `num_classes` probabilities per image."""
    import keras

    builder = check(spec, api, activation, native_ops)
    path = import_path(spec)
    try:
        model = builder(tuple(input_shape), num_classes,
                        **options_for(spec, builder, activation, native_ops))
    except Exception as e:  # the user's code: its error, in one line, with where it was
        first = (str(e).strip().splitlines() or [""])[0]
        raise ModelError(f"--model {path} failed to build a model for input {tuple(input_shape)} "
                         f"and {num_classes} classes ({type(e).__name__}: {first}): fix the "
                         f"function (--debug shows the traceback)") from e
    if not isinstance(model, keras.Model):
        raise ModelError(f"--model {path} returned {type(model).__name__}, not a Keras model: "
                         f"return keras.Model(inputs, outputs) (or a keras.Sequential)")
    try:
        out = tuple(model.output_shape)
    except (AttributeError, ValueError, TypeError):  # a subclassed model not yet called
        model(keras.ops.zeros((1, *input_shape)))
        out = tuple(model.compute_output_shape((1, *input_shape)))
    if len(out) != 2 or out[-1] != num_classes:
        raise ModelError(f"--model {path} builds a model whose output has shape {out}, but "
                         f"the dataset has {num_classes} classes: end it with "
                         f"Dense(classes, activation='softmax') on the `classes` it is given")
    last = getattr(model.layers[-1], "activation", None) if model.layers else None
    if getattr(last, "__name__", "") == "linear":
        raise ModelError(f"--model {path} ends in a linear layer (logits), but kvt trains "
                         f"with categorical cross-entropy on probabilities: end it with "
                         f"activation='softmax'")
    return model


def describe(spec: str) -> dict[str, Any]:
    """What a run records of the builder: its import path, and its module's source file
    (relative to the current folder when under it) with the file's SHA-256."""
    path = import_path(spec)
    module = sys.modules.get(path.split(":")[0])
    source = getattr(module, "__file__", None)
    record: dict[str, Any] = {"import": path, "file": None, "sha256": None}
    if source and Path(source).is_file():
        file = Path(source).resolve()
        try:
            record["file"] = str(file.relative_to(Path.cwd().resolve()))
        except ValueError:
            record["file"] = file.name  # no machine path in a run that travels
        record["sha256"] = hashlib.sha256(file.read_bytes()).hexdigest()
    return record


def needed_import(meta: dict[str, Any]) -> str | None:
    """The module a model file's builder came from, for the `--import` its own layers need."""
    source = meta.get("model_source") or {}
    path = source.get("import") if isinstance(source, dict) else None
    return path.split(":")[0] if isinstance(path, str) and ":" in path else None
