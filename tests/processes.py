"""Helpers for tests that run `kvt` in child processes and read the run directories."""

import csv
import io
import os
import subprocess
import sys
import zipfile

import h5py

# How long a test waits on a child process or an event before it calls it a hang. Not a
# timing: far beyond any load seen (at load average 8 on 2 cores a 3-epoch digits run on
# PyTorch with 2 threads took over 5 minutes and failed the 300 s bound this replaced).
HANG = 1800


def kvt(*argv: str) -> list[str]:
    return [sys.executable, "-m", "kvt", *argv]


def child_env(tmp_path) -> dict[str, str]:
    """The environment of a child `kvt`: its own data cache, unbuffered output, and the
    backend chosen by its flags alone."""
    env = dict(os.environ, KVT_CACHE_DIR=str(tmp_path / "cache"), PYTHONUNBUFFERED="1")
    env.pop("KERAS_BACKEND", None)
    return env


def start_kvt(tmp_path, *argv: str, **popen) -> subprocess.Popen:
    """`kvt argv` as a child in child_env(tmp_path), its output piped as text."""
    return subprocess.Popen(kvt(*argv), env=child_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def start_and_stop(argv, env, after_line, sig):
    """Starts `kvt argv`, sends `sig` once stdout shows `after_line`: (code, stderr)."""
    proc = subprocess.Popen(kvt(*argv), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(after_line):
            proc.send_signal(sig)
            break
    _, err = proc.communicate(timeout=HANG)
    assert any(s.startswith(after_line) for s in seen), "".join(seen) + err
    return proc.returncode, err


def history(run):
    """history.csv's rows without the timing columns."""
    with open(run / "history.csv", newline="") as f:
        return [{k: v for k, v in row.items() if not k.endswith("seconds")}
                for row in csv.DictReader(f)]


def weights(run):
    """Every array of the run's model.keras, by its path in the weights file."""
    with zipfile.ZipFile(run / "model.keras") as z:
        data = z.read("model.weights.h5")
    found = {}
    with h5py.File(io.BytesIO(data), "r") as f:
        f.visititems(lambda name, obj: found.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return found


def signal_when(proc, line_start, delay, sig, seen):
    """In a thread: sends `sig` `delay` seconds after `proc` prints a line starting with
    `line_start`, then keeps reading so that the process never blocks on its pipe."""
    import threading
    import time

    def work():
        for line in proc.stdout:
            seen.append(line)
            if line.startswith(line_start):
                time.sleep(delay)  # the offset under test, not a synchronisation
                proc.send_signal(sig)
                break
        seen.extend(proc.stdout)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def event_files(run, folder):
    """[{tag: [(step, value), ...]}, ...]: each event file of run/logs/folder, in the order
    the files were opened."""
    import tensorflow as tf

    files = sorted((run / "logs" / folder).glob("events.out.tfevents.*"),
                   key=lambda f: int(f.name.split(".")[3]))  # the time it was opened
    found = []
    for f in files:
        scalars: dict = {}
        for event in tf.compat.v1.train.summary_iterator(str(f)):
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append(
                    (event.step, float(tf.make_ndarray(value.tensor))))
        found.append(scalars)
    return found
