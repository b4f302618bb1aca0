"""The README and the documentation site, checked as a reader would use them: the site
builds with `mkdocs build --strict`, every link into the repository leads somewhere, every
`kvt` command shown parses, and the commands and Python snippets that run offline in
seconds run as shown. The others are listed by `not_run()` with the reason (CIFAR-10,
another engine, several devices, a Ray cluster, minutes of measuring); the tests that
cover what they do are named there."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from processes import HANG

from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(page: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", page.read_text(), re.S)


def shell_lines() -> list[tuple[str, str]]:
    """(page name, command) for every command line of every bash block, and every line
    of a text block that starts with a `$ ` prompt, comments and output redirections cut
    off."""
    lines = []
    for page in PAGES:
        shown = [line for block in blocks(page, "bash") for line in block.splitlines()]
        shown += [line[2:] for block in blocks(page, "text") for line in block.splitlines()
                  if line.startswith("$ ")]
        for line in shown:
            command = re.split(r"\s+#\s|\s[>|]\s", " " + line)[0].strip()
            if command and not command.startswith("#"):
                lines.append((page.name, command))
    return lines


# Why a shown command cannot run in the suite: the first rule whose pattern the command
# matches gives the reason. Every command shown must either run or match a rule.
NOT_RUN = [
    (r"^make ", "builds its own .venv (the suite already runs in one)"),
    (r"^(python3 -m venv|pip install)", "changes the Python environment"),
    (r"^(tensorboard|optuna-dashboard) ", "starts a server"),
    (r"^export ", "sets a variable for the commands after it"),
    (r"^(\w+=\S+ )*(python )?benchmarks/", "measures for minutes, most on the full CIFAR-10"),
    (r"--executor ray", "needs Ray, a cluster for most (tests/executors/test_ray.py runs "
                        "digits sweeps on a local and a simulated two-node cluster)"),
    (r"--distribute|--num-processes",
     "several devices or processes (tests/test_distribute.py; GPUs untested)"),
    (r"^kvt export .*--format litert",
     "LiteRT's converter takes a while (tests/test_export.py and test_readme.py run it)"),
    (r"^kvt bench", "measures for minutes (tests/bench/test_bench.py runs tiny benches)"),
    (r"^kvt compare --(resume|extend|report) runs/compare-",
     "needs a sweep trained before (tests/compare/test_compare.py resumes, extends and "
     "reports digits sweeps)"),
    (r"^kvt compare --vary model=", "trains a sweep of digits runs, minutes "
                                    "(tests/compare/test_compare.py runs sweeps on digits; "
                                    "tests/cli/test_user_model.py checks builders first)"),
    (r"^kvt compare", "trains a sweep of CIFAR-10 runs, minutes to hours "
                      "(tests/compare/test_compare.py runs sweeps on digits)"),
    (r"^kvt tune", "trains a search of runs, minutes (tests/tune/test_tune_cli.py runs a "
                   "tiny study on digits, stops and resumes it, and checks the refusals)"),
    (r"--config runs/tune-", "needs a search run before (tests/tune/test_tune_cli.py "
                             "trains its best.json)"),
    (r"--backend (jax|torch)",
     "another engine: the suite's process runs TensorFlow (tests/test_backends*.py)"),
    (r"--config configs/", "a sweep's own command line, as its train.log shows it"),
    (r"--resume runs/long|--config runs/try1",
     "continues a CIFAR-10 run trained before (tests/test_resume.py)"),
    (r"path/to/my_images", "needs a folder of your own images (tests/data/ covers folders)"),
    (r"--dataset (mnist|fashion_mnist|cifar100)",
     "reads or downloads an official dataset (tests/data/test_official.py reads generated "
     "files in the official formats)"),
    (r"^kvt train(?!.*--dataset digits)", "trains on CIFAR-10 (tests/test_cifar10_"
                                          "integration.py trains on a slice)"),
]
# Cheap commands that run in the suite's process, in a folder holding runs/demo (a digits
# run), digit.png, a folder digits/, myacts.py from the engines page and examples/; the
# trainings run first, so runs/resnet (your-model.md) exists for its export.
RUNS = re.compile(r"^kvt (--help|info\b|\S+ --help|evaluate runs/demo|predict runs/|"
                  r"export runs/(demo|resnet) --format (saved_model|onnx)|train --dataset digits)")


def not_run(command: str) -> str | None:
    if RUNS.match(command) and "--backend" not in command:
        return None
    for pattern, reason in NOT_RUN:
        if re.search(pattern, command):
            return reason
    return "no rule says why: run it, or add a rule"


COMMANDS = shell_lines()
KVT_COMMANDS = sorted({c for _, c in COMMANDS if c.startswith("kvt ")})
RUN = sorted({c for _, c in COMMANDS if not_run(c) is None},
             key=lambda c: (not c.startswith("kvt train"), c))  # trainings first


def test_every_shown_command_runs_or_says_why_not():
    unexplained = [c for _, c in COMMANDS if not_run(c) and not_run(c).startswith("no rule")]
    assert not unexplained, unexplained


@pytest.mark.parametrize("command", KVT_COMMANDS)
def test_every_shown_kvt_command_parses(command):
    """A flag that kvt does not have, or a value argparse refuses, fails here."""
    from kvt.cli import build_parser

    try:
        build_parser().parse_args(shlex.split(command)[1:])
    except SystemExit as e:  # --help prints and exits 0; a refused flag exits 2
        assert e.code == 0, command


@pytest.fixture(scope="module")
def reader_folder(tmp_path_factory, digits_runs):
    """What the pages assume: runs/demo, digit.png, digits/, myacts.py and examples/."""
    from PIL import Image

    from kvt.data import load_dataset

    folder = tmp_path_factory.mktemp("reader")
    shutil.copytree(digits_runs["keras"], folder / "runs" / "demo")
    images = load_dataset("digits").x_test
    Image.fromarray(images[7][..., 0]).save(folder / "digit.png")
    (folder / "digits").mkdir()
    for i in range(3):
        Image.fromarray(images[i][..., 0]).save(folder / "digits" / f"{i}.png")
    (myacts,) = [b for b in blocks(ROOT / "docs" / "engines.md", "python")
                 if b.startswith("# myacts.py")]
    (folder / "myacts.py").write_text(myacts)
    shutil.copytree(ROOT / "examples", folder / "examples")
    return folder


def test_shown_offline_commands_run_as_shown(reader_folder, capsys, monkeypatch):
    """In one process, in the order trainings first, so that the runs they write (such as
    runs/swish2) exist for the commands that use them."""
    monkeypatch.chdir(reader_folder)
    monkeypatch.syspath_prepend(str(reader_folder))  # myacts, "anywhere on PYTHONPATH"
    monkeypatch.setenv("KVT_CACHE_DIR", str(reader_folder / "cache"))
    failed = []
    for command in RUN:
        code, out, err = run_cli(capsys, *shlex.split(command)[1:])
        if code != 0:
            failed.append(f"{command}: exit {code}: {err[-500:]}")
    assert not failed, "\n".join(failed)


def python_snippets() -> list[str]:
    """Every Python block, except those tests/test_readme.py runs with their own setup."""
    covered = ("load_model(", '"runs/demo/config.json"')
    return [b for page in PAGES for b in blocks(page, "python")
            if not any(c in b for c in covered)]


@pytest.mark.parametrize("snippet", python_snippets(),
                         ids=lambda b: b.splitlines()[0][:40])
def test_python_snippet_runs_as_shown(snippet, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, "snippet.py", "exec"), {"__name__": "snippet"})


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    for module in ("mkdocs", "material", "mkdocstrings"):
        pytest.importorskip(module, reason=f"{module} comes with kvt[docs] (make test)")
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=HANG,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})  # Material's banner
    assert built.returncode == 0, built.stderr[-5000:]
    return out


@pytest.mark.process
def test_site_builds_strict_with_the_api_reference(site):
    """Strict: a broken link or anchor, a missing page, a nav entry without a file fail."""
    api = (site / "api.html").read_text()
    for name in ("kvt.load_model", "kvt.keras2_decay", "MiniVGGNetKeras", "CReLU"):
        assert name in api, name
    assert "<blockquote" not in api  # docstrings' >>> examples render as code (docs/hooks)
    index = (site / "index.html").read_text()
    assert "76.81" in index  # the README's answer, included rather than copied


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in t]


@pytest.mark.process
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_into_the_repository_lead_somewhere(page, site):
    """mkdocs checks links between pages; links from a page into the repository (the
    README's to docs/ and results/, a page's to ../results/) are checked here, and an
    anchor on a page against the built site's ids."""
    for link in links(page):
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.name}: {link}"
        if anchor and path.suffix == ".md" and path.parent == ROOT / "docs":
            html = site / f"{path.stem}.html"
            assert f'id="{anchor}"' in html.read_text(), f"{page.name}: {link}"
