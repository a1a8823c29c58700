# tether — `make demo` runs the sidecar tour, `make test` runs lint, types and every test.
VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit integration bench schema clean

$(STAMP): pyproject.toml constraints.txt
	@PY=$$(scripts/find-python) || exit 1; \
	  echo "using $$PY"; \
	  [ -x $(BIN)/python ] || "$$PY" -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tether demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy tether tests

test: lint
	$(BIN)/pytest tests

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest tests/integration

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

schema: $(STAMP)
	$(BIN)/tether policy schema > policies/schema.json

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
