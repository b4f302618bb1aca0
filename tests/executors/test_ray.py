"""kvt compare --executor ray: a sweep on the Ray instance kvt starts itself (with one Ray
worker SIGKILLed mid-run) and a sweep on a simulated two-node cluster
(ray.cluster_utils.Cluster, on 127.0.0.1) whose runs are copied between node and driver,
stopped with SIGTERM and resumed; both compared with the local executor's sweep of the
same plan. Plus the pieces that need no Ray: packing and swapping in a run directory,
and the one-line refusal without Ray.

Every Ray process of these tests keeps to the loopback interface, writes its session
files under a temporary directory of its own (RAY_TMPDIR) and none to ~/.ray, and is
gone when its test ends."""

import importlib.util
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from events import wait_for_text
from kvt.executors.ray_task import (MARKER, NotShared, _child_env, _run_task, pack,
                                    swap_in)
from kvt.runs import LOCK, RunDir
from processes import HANG, child_env, kvt

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray is not installed (pip install 'kvt[ray]')")

# 2 configurations x 2 seeds of tiny deterministic digits runs, 3 epochs each so that a
# run killed after its first epoch still has work left. One thread per run everywhere
# (--threads 1 for the local pool, 1 CPU per Ray task) so that the sweeps compare exactly.
GRID = ["--vary", "activation=relu,crelu", "--dataset", "digits", "--epochs", "3",
        "--batch-size", "8", "--train-limit", "400", "--test-limit", "100", "--deterministic"]
PLAN = [*GRID, "--seeds", "2"]


def ray_env(root: Path) -> dict[str, str]:
    """The environment of every Ray process of a test: no token written to ~/.ray (a
    cluster on loopback needs none); every node and driver on 127.0.0.1 (without
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, Ray turns 127.0.0.1 into the machine's own
    address); session files and sockets under `root` (short: a socket path has a limit
    of about 100 characters)."""
    return {"RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_TMPDIR": str(root)}


def ray_root() -> Path:
    return Path(tempfile.mkdtemp(prefix="kvt-ray-test-", dir="/tmp"))


def processes_with(root: Path) -> list[int]:
    """The processes whose environment names `root` as RAY_TMPDIR: a Ray instance's own
    (GCS, raylet, agents, workers) and the kvt train runs its workers started."""
    needle = f"RAY_TMPDIR={root}".encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def assert_all_gone(root: Path) -> None:
    """Waits (on pidfds, bounded) for every process of the Ray instance under `root`
    to end; fails naming any that did not."""
    left = []
    for pid in processes_with(root):
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            if not select.select([fd], [], [], 60)[0]:
                left.append(pid)
        finally:
            os.close(fd)
    assert not left, f"Ray processes still running: {left}"


def compare_kvt(tmp_path, root: Path, *argv: str) -> subprocess.Popen:
    env = {**child_env(tmp_path), **ray_env(root)}
    return subprocess.Popen(kvt("compare", *argv), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def results(sweep: Path) -> dict:
    """What compare.json says about every run: its status and accuracy, by label and seed."""
    saved = json.loads((sweep / "compare.json").read_text())
    return {(r["label"], r["seed"]): (r["status"], r["accuracy"]) for r in saved["runs"]}


def ray_lines(run: Path) -> list[str]:
    return [ln for ln in (run / "train.log").read_text().splitlines() if ln.startswith("# ray:")]


@pytest.fixture(scope="module")
def ray_reference(tmp_path_factory):
    """The local executor's sweep of PLAN: {(label, seed): (status, accuracy)}."""
    root = tmp_path_factory.mktemp("ray-reference")
    out = root / "sweep"
    done = subprocess.run(kvt("compare", *PLAN, "-j", "2", "--threads", "1", "--out", str(out)),
                          env=child_env(root), capture_output=True, text=True, timeout=HANG)
    assert done.returncode == 0, done.stdout + done.stderr
    return results(out)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A simulated two-node Ray cluster on 127.0.0.1, one CPU per node: its address."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'kvt[ray]')")
    from ray.cluster_utils import Cluster

    root, home = ray_root(), tmp_path_factory.mktemp("ray-cluster")
    mp = pytest.MonkeyPatch()
    for name, value in {**ray_env(root), "KVT_CACHE_DIR": str(home / "cache"),
                        "KERAS_HOME": str(home / "keras"), "PYTHONUNBUFFERED": "1"}.items():
        mp.setenv(name, value)  # the nodes keep the environment they start with
    sigterm = signal.getsignal(signal.SIGTERM)  # the head node installs its own handler
    try:
        cluster = Cluster(initialize_head=True,
                          head_node_args={"num_cpus": 1, "include_dashboard": False})
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes(timeout=120)
    finally:
        mp.undo()
    try:
        yield cluster.address
    finally:
        cluster.shutdown()
        signal.signal(signal.SIGTERM, sigterm)
        assert_all_gone(root)
        shutil.rmtree(root, ignore_errors=True)


def test_pack_and_swap_in_replace_a_run_directory_whole(tmp_path):
    node = tmp_path / "node" / "seed-0"
    node.mkdir(parents=True)
    for name, text in {"status.json": '{"status": "complete"}', "metrics.json": "{}",
                       LOCK: "123 host\n", ".metrics.99.tmp.json": "half"}.items():
        (node / name).write_text(text)
    data = pack(node, [Path(p.name) for p in node.iterdir()])
    here = RunDir(tmp_path / "sweep" / "runs" / "relu" / "seed-0")
    here.path.mkdir(parents=True)
    (here / "checkpoint.npz").write_text("stale")  # gone once the node's run is in place
    swap_in(here, data)
    assert sorted(p.name for p in here.path.iterdir()) == ["metrics.json", "status.json"]
    assert here.status() == "complete"
    assert [p.name for p in here.path.parent.iterdir()] == ["seed-0"]  # nothing left beside


def test_threads_follow_the_cpus_ray_grants_and_no_gpu_is_seen():
    env = _child_env(3)
    assert (env["OMP_NUM_THREADS"], env["TF_NUM_INTRAOP_THREADS"],
            env["TF_NUM_INTEROP_THREADS"], env["CUDA_VISIBLE_DEVICES"]) == ("3", "3", "1", "")


def test_a_node_that_does_not_see_a_shared_sweep_directory_says_so(tmp_path):
    class Context:  # what a Ray task's runtime context tells
        def get_assigned_resources(self):
            return {"CPU": 1.0}

        def get_node_id(self):
            return "ab" * 28

    (tmp_path / MARKER).write_text("the driver's token")
    spec = {"root": str(tmp_path), "token": "another session's token", "storage": "shared",
            "cpus": 1, "run": "runs/relu/seed-0", "files": None, "start": [], "resume": []}
    with pytest.raises(NotShared, match="does not see the sweep directory .* use "
                                        "--ray-storage auto"):
        _run_task(spec, Context())
    assert not (tmp_path / "runs").exists()


@pytest.mark.process
def test_without_ray_the_executor_is_one_line_with_the_pip_command(tmp_path):
    code = ("import sys; sys.modules['ray'] = None; from kvt.cli import main; "
            "sys.exit(main(sys.argv[1:]))")  # `import ray` fails as if it were not installed
    out = subprocess.run([sys.executable, "-c", code, "compare", "--executor", "ray",
                          "--preset", "tutorial", "--out", str(tmp_path / "sweep")],
                         env=child_env(tmp_path), capture_output=True, text=True, timeout=HANG)
    assert out.returncode == 5, out.stderr
    assert out.stderr == ("kvt compare: error: --executor ray needs Ray, which is not "
                          "installed: pip install 'kvt[ray]'\n")
    assert not (tmp_path / "sweep").exists()


@pytest.mark.process
@needs_ray
def test_sweep_on_its_own_ray_instance_equals_the_local_one_after_a_killed_worker(
        tmp_path, ray_reference):
    root, out = ray_root(), tmp_path / "sweep"
    try:
        proc = compare_kvt(tmp_path, root, "--executor", "ray", *GRID, "--seeds", "1",
                           "--out", str(out))
        run = out / "runs" / "relu" / "seed-0"
        wait_for_text(run / "train.log", "epoch 1/3", proc)
        worker = int(re.search(r"worker pid (\d+)", ray_lines(run)[0])[1])
        os.kill(worker, signal.SIGKILL)  # the Ray worker process that runs the task
        stdout, stderr = proc.communicate(timeout=HANG)
        assert_all_gone(root)  # the instance kvt started went with it
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert proc.returncode == 0, stdout + stderr
    assert "a local Ray instance: 1 node" in stdout and "1 CPU per run" in stdout
    assert results(out) == {run: r for run, r in ray_reference.items() if run[1] == 0}
    # Ray retried the task, which continued the run from its checkpoint of epoch 1
    log = (run / "train.log").read_text()
    assert "$ kvt train --resume runs/relu/seed-0" in log and len(ray_lines(run)) == 2
    assert json.loads((run / "metrics.json").read_text())["starts"] == 2
    for seed_run in out.glob("runs/*/seed-*"):
        assert "1 CPU, in the sweep directory" in ray_lines(seed_run)[-1]
        threads = json.loads((seed_run / "config.json").read_text())["environment"]
        assert threads["thread_settings"] == {"OMP_NUM_THREADS": "1",
                                              "TF_NUM_INTRAOP_THREADS": "1",
                                              "TF_NUM_INTEROP_THREADS": "1"}
    assert not (out / MARKER).exists()


@pytest.mark.process
@needs_ray
def test_two_nodes_copying_runs_stopped_and_resumed_equal_the_local_sweep(
        tmp_path, ray_reference, ray_cluster):
    root, out = ray_root(), tmp_path / "sweep"
    argv = ["--executor", "ray", "--ray-address", ray_cluster, "--ray-storage", "copy"]
    try:
        proc = compare_kvt(tmp_path, root, *argv, *PLAN, "--out", str(out))
        for line in proc.stdout:
            if "[1/4]" in line:  # one run is back; the next ones are on the nodes
                proc.send_signal(signal.SIGTERM)
                break
        _, stderr = proc.communicate(timeout=HANG)
        assert proc.returncode == 130, stderr
        assert stderr.strip().splitlines()[-1].endswith(f"kvt compare --resume {out}")
        assert RunDir(out).status() == "interrupted"

        proc = compare_kvt(tmp_path, root, "--resume", str(out))  # Ray, copy: as saved
        stdout, stderr = proc.communicate(timeout=HANG)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert proc.returncode == 0, stdout + stderr
    assert f"the Ray cluster at {ray_cluster}: 2 nodes, 2 CPUs" in stdout
    assert results(out) == ray_reference
    nodes = set()
    for run in out.glob("runs/*/seed-*"):
        lines = ray_lines(run)
        assert all(", in a copy at " in ln for ln in lines)
        nodes |= {re.search(r"node (\w+)", ln)[1] for ln in lines}
    assert len(nodes) == 2  # both nodes trained
    assert [p.name for p in out.glob("runs/*/.*")] == []  # no copy left half-way
