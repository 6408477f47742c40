# `make run`: set up .venv if missing, then run the embedded default suite (offline, CPU ok).
# `make test`: the same set-up, then the test suite.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1 || \
		$(BIN)/python -m pip install --quiet torch torchvision
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/xdkd methods > /dev/null  # builds the catalogue listings read without torch
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/xdkd run

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check benchmark tests benchmarks examples && $(BIN)/ruff format --check benchmark tests benchmarks examples

clean:
	rm -rf runs .pytest_cache
