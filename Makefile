# `make run`: set up .venv if missing, then run the embedded default suite (offline, CPU ok).
# `make test`: the same set-up, then the test suite. `make regression`: the ci suite's check.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test regression lint docs wheel-check clean

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

# pytest-xdist: one worker a core (TEST_WORKERS=0 runs the tests in this process); the ten
# slowest tests are listed at the end, where the 5-minute budget of the tests goes
TEST_WORKERS ?= auto

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations 10

# The `ci` suite trained from scratch and checked against its committed reference (CI runs it
# after `make test`; it trains for minutes, so it is not one of the tests).
regression: $(STAMP)
	rm -rf runs/ci-regression
	$(BIN)/xdkd run ci --out runs/ci-regression --results runs/ci-regression/results --no-progress
	$(BIN)/xdkd check --baseline baselines/ci.reference.json runs/ci-regression --abs-tol 1.0

# The documentation site (docs/, mkdocs.yml) into site/; --strict: a broken link fails it.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

# A built wheel, installed (not editable) into a fresh venv and run from outside the checkout:
# the suites and dataset families must come from the package itself.
WHEEL_DIR ?= /tmp/xdkd-wheel-check
wheel-check: $(STAMP)
	rm -rf $(WHEEL_DIR) && mkdir -p $(WHEEL_DIR)/run
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir $(WHEEL_DIR)/dist .
	$(PYTHON) -m venv $(WHEEL_DIR)/venv
	$(WHEEL_DIR)/venv/bin/pip install --quiet torch==2.14.1 torchvision==0.29.1 || \
		$(WHEEL_DIR)/venv/bin/pip install --quiet torch torchvision
	$(WHEEL_DIR)/venv/bin/pip install --quiet $(WHEEL_DIR)/dist/xdkd_bench-*.whl
	cd $(WHEEL_DIR)/run && XDKD_CACHE=$(WHEEL_DIR)/cache ../venv/bin/xdkd datasets
	cd $(WHEEL_DIR)/run && XDKD_CACHE=$(WHEEL_DIR)/cache ../venv/bin/xdkd methods > methods.txt
	cd $(WHEEL_DIR)/run && XDKD_CACHE=$(WHEEL_DIR)/cache ../venv/bin/xdkd run quick --no-progress \
		--set seeds=[0] --set teacher_recipe.epochs=1 --set student_recipe.epochs=1 \
		--set corruptions=[] --set teacher_floor=0
	test -f $(WHEEL_DIR)/run/results/quick/leaderboard.md

lint: $(STAMP)
	$(BIN)/ruff check benchmark tests benchmarks examples && $(BIN)/ruff format --check benchmark tests benchmarks examples

clean:
	rm -rf runs .pytest_cache site
