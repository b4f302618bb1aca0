import json
import multiprocessing.process
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for tests/cifar_files.py

from kvt import backends  # noqa: E402
from processes import HANG  # noqa: E402

# The suite tests kvt as a terminal runs it. A shell that starts a job in the background
# without job control (`make test &` in a script), nohup or a CI runner can hand this
# process SIGINT or SIGTERM ignored, and kvt rightly keeps an inherited ignore; so the
# tests (and the processes they start, which inherit it) get the usual dispositions.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

# Under pytest-xdist (`make test`: two workers) each worker, and every `kvt` it starts,
# gets its share of the cores unless the environment already says how many threads to use
# (as `make test-stress` does). Without it two workers each start frameworks at every
# core's thread count; PyTorch's threads then spin against each other: the same 3-epoch
# digits run took 62 s with 2 threads beside a busy worker and 24 s with 1.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1 and not any(v in os.environ for v in backends.THREAD_VARIABLES):
    backends.set_threads(max(1, (os.cpu_count() or 1) // _WORKERS))

# One process, one backend: the suite runs on TensorFlow (the only backend with
# `--api tf`); TF's start-up chatter is filtered as in the CLI.
backends.select("tensorflow")
backends.import_keras()

SHARED_CIFAR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-png"
# The seed of every training run in the suite. A test's assertions must hold for any seed:
# `make test-stress` runs the tests with measured margins (markers `learning`, `margins`)
# under several seeds and thread counts and prints how far each measure stays from its
# bound.
TEST_SEED = os.environ.get("KVT_TEST_SEED", "42")
# What a test's training run uses on digits: 3 epochs at batch 8 give BatchNorm's moving
# averages ~500 steps to settle (batch 32 would leave the test accuracy near chance).
FAST_DIGITS = ["--dataset", "digits", "--epochs", "3", "--batch-size", "8", "--seed", TEST_SEED]


def _record(measure: str, value: float, bound: float, kind: str) -> None:
    log = os.environ.get("KVT_STRESS_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"measure": measure, "value": float(value), "bound": bound,
                                "kind": kind, "seed": TEST_SEED,
                                "threads": os.environ.get("KVT_STRESS_THREADS")}) + "\n")


def learned(measure: str, value: float, threshold: float) -> None:
    """Asserts that a learning measure (an accuracy) stays above its threshold; under
    `make test-stress` also records the value. Each call's comment gives the spread."""
    _record(measure, value, threshold, "above")
    assert value > threshold, f"{measure} = {value:.4f}, not above {threshold}"


def within(measure: str, value: float, limit: float) -> None:
    """Asserts that a numerical difference stays within its tolerance; under `make
    test-stress` also records the value. Each call's comment gives the spread."""
    _record(measure, value, limit, "below")
    assert value <= limit, f"{measure} = {value:.3g}, above the tolerance {limit:g}"


def apart(measure: str, value: float, floor: float) -> None:
    """Asserts that a difference a setting makes stays above `floor` (a tolerance that the
    same test uses to call two results equal); under `make test-stress` also records it."""
    _record(measure, value, floor, "apart")
    assert value > floor, f"{measure} = {value:.3g}, not above {floor:g}"


def max_rel_diff(a: dict, b: dict, keys) -> float:
    """The largest relative difference between a[k] and b[k] over `keys`."""
    return max(abs(a[k] - b[k]) / max(abs(b[k]), 1e-12) for k in keys)


# Under pytest-xdist (`make test` runs `-n 2 --dist loadgroup`) each worker builds its own
# session and module fixtures: every test of one expensive fixture goes to one worker, so
# that none is built twice. killed_and_resumed's groups come with its parameters (one per
# backend, so that the backends can run side by side).
XDIST_GROUPS = {"digits_runs": "digits_runs", "parity": "parity",
                "signalled_trainings": "signalled_trainings",
                "ray_reference": "ray", "ray_cluster": "ray"}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture, group in XDIST_GROUPS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(group))
    structured_ids = items and hasattr(items[0], "_id") and not hasattr(items[0], "_nodeid")
    if getattr(config.option, "loadgroup", False) and structured_ids:  # an xdist worker
        _suffix_groups(items)


def _suffix_groups(items):
    """xdist sends a group to one worker by the "@group" suffix that its workers append to
    each test's id, through the attribute `_nodeid`, which pytest 9.2 no longer reads (its
    ids are structured): the groups are silently ignored (pytest-xdist issue #1386). Until
    xdist appends them itself, do it here as its fix does (only where `_nodeid` is gone)."""
    from _pytest.nodeid import coerce_node_id

    for item in items:
        groups = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                         for m in item.iter_markers("xdist_group")})
        if groups:
            item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(groups)}")


# Two tiers. `make check` runs the tests that start no child process (`-m "not process"`)
# in a few minutes; `make test` runs them all. While the `process` tests are left out, a
# test without that marker that starts a child process (subprocess, multiprocessing, a
# fork; Ray and mkdocs start theirs through these) fails at once and names the command,
# instead of quietly making the quick tier slow: the tier stays honest as tests are added.
# Under `make test` nothing is patched.
SPAWNS = [(subprocess.Popen, "_execute_child"), (multiprocessing.process.BaseProcess, "start"),
          (os, "fork")]


class UnmarkedChildProcess(RuntimeError):
    """Not an OSError, which a library may catch as "no such program" and carry on."""


def _refuser(nodeid: str, what: str):
    def refuse(*args, **kwargs):
        command = args[1] if what == "subprocess" and len(args) > 1 else args[:1]
        raise UnmarkedChildProcess(
            f"{nodeid} starts a child process ({what}: {command!r}) but has no `process` "
            f"marker; mark it @pytest.mark.process (or its module, pytestmark), so that "
            f"make check leaves it out and make test runs it")
    return refuse


def _leaves_out_process_tests(config) -> bool:
    return re.search(r"\bnot\s+process\b", config.option.markexpr or "") is not None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Refuses child processes during a test's setup, call and teardown (the fixtures it
    builds included) when the run leaves the `process` tests out and it is not one."""
    if item.get_closest_marker("process") or not _leaves_out_process_tests(item.config):
        return (yield)
    with pytest.MonkeyPatch.context() as mp:
        for owner, name in SPAWNS:
            what = "subprocess" if owner is subprocess.Popen else f"{owner.__name__}.{name}"
            mp.setattr(owner, name, _refuser(item.nodeid, what))
        return (yield)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """No test reads or writes the user's caches or finds data through their settings."""
    monkeypatch.setenv("KVT_CACHE_DIR", str(tmp_path / "kvt-cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.delenv("KVT_DATA_DIR", raising=False)
    monkeypatch.delenv("KVT_NO_CACHE", raising=False)


def run_cli(capsys, *argv: str):
    """Runs `kvt argv` in this process: (exit code, stdout, stderr)."""
    from kvt.cli import main

    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse's own exits
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="session")
def digits_runs(tmp_path_factory):
    """Two finished runs on digits, trained once per session: {"keras": dir, "tf": dir}."""
    from kvt.cli import main

    root = tmp_path_factory.mktemp("runs")
    runs = {}
    mp = pytest.MonkeyPatch()
    mp.setenv("KVT_CACHE_DIR", str(root / "cache"))
    try:
        for api, activation in (("keras", "crelu"), ("tf", "crelu")):
            out = root / api
            code = main(["train", *FAST_DIGITS, "--api", api, "--activation", activation,
                         "--out", str(out), "--plot", str(root / f"plot_{api}.png")])
            assert code == 0
            runs[api] = out
    finally:
        mp.undo()
    return runs


@pytest.fixture(scope="session")
def cifar_slice(tmp_path_factory):
    """A slice of the real CIFAR-10 as an image-folder tree of links: 400 train and 100 test
    images per class, so a test decodes 5,000 PNGs instead of 60,000."""
    if not (SHARED_CIFAR / "train").is_dir():
        pytest.skip(f"real CIFAR-10 not found at {SHARED_CIFAR} (it ships beside the repo "
                    f"only for developers and CI)")
    root = tmp_path_factory.mktemp("cifar10-slice")
    for split, per_class in (("train", 400), ("test", 100)):
        for source in sorted(d for d in (SHARED_CIFAR / split).iterdir() if d.is_dir()):
            dest = root / split / source.name
            dest.mkdir(parents=True)
            for image in sorted(source.iterdir())[:per_class]:
                (dest / image.name).symlink_to(image)
    return root


# (--test-limit 128: whole batches of 16, so no engine compiles a second, odd-sized step.)
# One deterministic digits run per backend, trained straight through, and one killed
# (SIGKILL) after epoch 2 and resumed: three processes per backend prove both that two
# processes train identically (--deterministic) and that resume is exact.
# The fast recipe's schedule (warm-up + cosine over optimizer steps), Nesterov momentum,
# weight decay and per-epoch augmentation must all continue where they stopped.
RESUME_ARGS = ["--dataset", "digits", "--recipe", "fast", "--lr", "0.02", "--epochs", "4",
               "--batch-size", "16", "--train-limit", "480", "--test-limit", "128", "--seed",
               TEST_SEED, "--activation", "crelu", "--deterministic"]


@pytest.fixture(scope="session", params=[
    pytest.param(b, marks=pytest.mark.xdist_group(f"killed_and_resumed-{b}"))
    for b, ok in backends.installed().items() if ok])
def killed_and_resumed(request, tmp_path_factory):
    """{"backend", "full", "part", "killed": what the kill left, "resumed": the process}."""
    import signal
    import subprocess
    from types import SimpleNamespace

    from processes import child_env, history, kvt, start_and_stop

    backend = request.param
    root = tmp_path_factory.mktemp(f"resume-{backend}")
    env, argv = child_env(root), [*RESUME_ARGS, "--backend", backend]
    full, part = root / "full", root / "part"
    done = subprocess.run(kvt("train", *argv, "--out", str(full)), env=env,
                          capture_output=True, text=True, timeout=HANG)
    assert done.returncode == 0, done.stderr[-2000:]
    code, _ = start_and_stop(["train", *argv, "--out", str(part)], env, "epoch 2/4",
                             signal.SIGKILL)
    killed = SimpleNamespace(
        code=code, status=json.loads((part / "status.json").read_text())["status"],
        history=history(part), checkpoint=(part / "checkpoint.npz").is_file(),
        model=(part / "model.keras").exists())
    resumed = subprocess.run(kvt("train", "--resume", str(part)), env=env, capture_output=True,
                             text=True, timeout=HANG)
    return SimpleNamespace(backend=backend, full=full, part=part, killed=killed,
                           resumed=resumed)


# Real `kvt train` processes side by side, each sent a real signal at its own moment:
# events from its output (the last one while the interpreter shuts down after the run is
# saved) and delays after its data is loaded. One set of processes serves the signal tests
# (tests/test_signals.py) and resume's Ctrl-C and SIGTERM tests (tests/test_resume.py).
SIGNAL_ARGS = ["--dataset", "digits", "--epochs", "3", "--batch-size", "16", "--train-limit",
               "160", "--test-limit", "60"]
SIGNAL_MOMENTS = {  # name: (after a line starting with, delay in seconds, signal)
    "sigint as data loads": ("kvt: digits", 0.0, "SIGINT"),
    "sigterm 0.7 s after data loads": ("kvt: digits", 0.7, "SIGTERM"),
    "sigint after the run is saved": ("run saved to", 0.0, "SIGINT"),
    "sigterm after epoch 1": ("epoch 1/3", 0.0, "SIGTERM"),
    "sigint after epoch 1": ("epoch 1/3", 0.0, "SIGINT"),
}


@pytest.fixture(scope="session")
def signalled_trainings(tmp_path_factory):
    """{moment: SimpleNamespace(run, code, out, err)}, one process per SIGNAL_MOMENTS entry;
    each test that resumes a run resumes its own."""
    import signal
    import subprocess
    from types import SimpleNamespace

    from processes import child_env, kvt, signal_when

    root = tmp_path_factory.mktemp("signalled")
    started = {}
    for i, (name, (line, delay, sig)) in enumerate(SIGNAL_MOMENTS.items()):
        run = root / f"run{i}"
        proc = subprocess.Popen(kvt("train", *SIGNAL_ARGS, "--out", str(run)),
                                env=child_env(root), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        seen: list[str] = []
        started[name] = (run, proc, seen,
                         signal_when(proc, line, delay, getattr(signal, sig), seen))
    done = {}
    for name, (run, proc, seen, thread) in started.items():
        thread.join(timeout=HANG)
        err = proc.communicate(timeout=HANG)[1]
        done[name] = SimpleNamespace(run=run, code=proc.returncode, out="".join(seen), err=err)
    return done
