# The two commands: `make demo` (end-to-end demo) and `make test` (the whole suite).
# Both create .venv and install the project into it when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export DO_NOT_TRACK := 1

.PHONY: install demo test test-fast bench lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[server,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python -m registry.demo $(DEMO_ARGS)

# pytest exits 5 when it collected nothing; that is a failure here, never a silent pass.
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

test-fast: install
	$(BIN)/python -m pytest -m "not slow" -x -q $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check registry validators dashboards tests benchmarks migrations
	$(BIN)/ruff format --check registry validators dashboards tests benchmarks migrations
	$(BIN)/mypy

format: install
	$(BIN)/ruff format registry validators dashboards tests benchmarks migrations
	$(BIN)/ruff check --fix registry validators dashboards tests benchmarks migrations

clean:
	rm -rf .assay .assay-demo .pytest_cache .mypy_cache .ruff_cache
