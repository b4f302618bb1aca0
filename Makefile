# make demo   fresh machine -> .venv, install, train on the bundled digits set (offline)
# make test   fresh machine -> .venv, install, run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kvt-installed

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/kvt train --dataset digits --epochs 10 --batch-size 16 --out runs/demo --force
	@echo "demo outputs: runs/demo (report.txt, plot.png, confusion_matrix.png, model.keras)"

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/seed_table.py --epochs 1

clean:
	rm -rf $(VENV) runs build dist src/*.egg-info .pytest_cache
