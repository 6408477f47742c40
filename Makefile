# `make run`: set up .venv if missing, then run the embedded default suite (offline, CPU ok).
# `make test`: the same set-up, then the test suite. `make regression`: the ci suite's check.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test regression lint clean

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

# pytest-xdist: one worker a core (TEST_WORKERS=0 runs the tests in this process)
TEST_WORKERS ?= auto

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal

# The `ci` suite trained from scratch and checked against its committed reference (CI runs it
# after `make test`; it trains for minutes, so it is not one of the tests).
regression: $(STAMP)
	rm -rf runs/ci-regression
	$(BIN)/xdkd run ci --out runs/ci-regression --results runs/ci-regression/results --no-progress
	$(BIN)/xdkd check --baseline baselines/ci.reference.json runs/ci-regression --abs-tol 1.0

lint: $(STAMP)
	$(BIN)/ruff check benchmark tests benchmarks examples && $(BIN)/ruff format --check benchmark tests benchmarks examples

clean:
	rm -rf runs .pytest_cache
