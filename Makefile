# make demo   fresh machine -> .venv, install kvt, train on the bundled digits set (offline)
# make test   fresh machine -> .venv, install kvt with every engine, exporter and Ray, run the whole test suite
# make check  the same install, then the tests that start no child process: minutes, for the edit-and-check loop
# make docs   the documentation site (MkDocs + Material) into site/
# make test-stress   the learning (10 seeds) and tolerance (3 seeds) tests at 1 and 2 threads: their margins
PYTHON ?= python3
# make test covers every engine. torch 2.13.0 is pinned because that release's CPU build
# is what this project's machines have on disk; elsewhere choose your own build, e.g.
# make test TORCH='torch>=2.4,<3'.
TORCH  ?= torch==2.13.0
VENV   := .venv
BIN    := $(VENV)/bin
BASE   := $(VENV)/.kvt-base
FULL   := $(VENV)/.kvt-full
DOCS   := $(VENV)/.kvt-docs

.PHONY: install demo check test test-stress docs bench clean

$(BASE): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(BASE)

$(FULL): $(BASE)
	$(BIN)/python -m pip install --quiet '$(TORCH)'
	$(BIN)/python -m pip install --quiet -e '.[test,docs,all]'
	touch $(FULL)

install: $(BASE)

demo: $(BASE)
	$(BIN)/kvt train --dataset digits --epochs 10 --batch-size 16 --out runs/demo --force
	@echo "demo outputs: runs/demo (report.txt, plot.png, confusion_matrix.png, model.keras)"

# Two workers (pytest-xdist), one per core: most of the suite waits on child processes
# that start a framework cold. --dist loadgroup keeps the tests of one expensive fixture
# on one worker (see conftest.py); a plain `pytest` runs the same tests in one process.
test: $(FULL)
	$(BIN)/python -m pytest -n 2 --dist loadgroup

# The quick tier: every test but those that start a child process (marker `process`: a
# kvt run, an engine's worker, Ray, mkdocs), which take most of make test's time. While
# they are left out, conftest.py fails any other test that starts a child process.
check: $(FULL)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not process"

test-stress: $(FULL)
	$(BIN)/python tests/stress.py --seeds 10 --margin-seeds 3 --threads 1,2

$(DOCS): $(BASE)
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $(DOCS)

# --strict: a broken link, a missing page or a nav entry without a file fails the build.
# (NO_MKDOCS_2_WARNING silences Material's banner about MkDocs 2, printed on every build.)
docs: $(DOCS)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

bench: $(FULL)
	$(BIN)/python benchmarks/seed_table.py --epochs 1

clean:
	rm -rf $(VENV) runs site build dist src/*.egg-info .pytest_cache
