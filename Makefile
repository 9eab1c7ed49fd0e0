# The two commands: `make demo` and `make test`. Both set everything up on a fresh clone and are
# quick the second time (stamps under .venv/ and extension/node_modules/).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# On CI and dev machines here, torch must be the CPU wheel pip finds on local disk; on a user's
# machine the ordinary torch install for their platform applies (see README).
TORCH_SPEC ?= torch==2.13.0
export PYTHONDONTWRITEBYTECODE := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test setup py-setup ext-setup test-py test-ext test-e2e lint bench clean

demo: setup
	$(BIN)/python samples/demo.py

test: setup lint test-py test-ext test-e2e

setup: py-setup ext-setup

py-setup: $(VENV)/.stamp-py

$(VENV)/.stamp-py: pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev,samples,mlflow,deploy]"
	@# compile the numba kernels once into their cache (later imports load them in milliseconds)
	$(BIN)/python -c "import modelbonsai.compare.kernels, modelbonsai.artifacts.kernels, modelbonsai.ops.kernels"
	@touch $@

ext-setup:
	@if [ -f extension/package.json ]; then $(MAKE) -C extension setup; fi

lint: py-setup
	$(BIN)/ruff check server tests samples scripts
	@# one formatting: `ruff format server tests samples scripts` fixes what this reports
	$(BIN)/ruff format --check server tests samples scripts
	@# the package's type hints are checked too ([tool.mypy] in pyproject.toml: server/modelbonsai)
	$(BIN)/python -m mypy

test-py: py-setup
	$(BIN)/python -m pytest -q tests

test-ext:
	@if [ -f extension/package.json ]; then $(MAKE) -C extension test; fi

test-e2e:
	@if [ -f extension/package.json ]; then $(MAKE) -C extension e2e; fi

# Each bench's stdout and exit status go to $(VENV)/bench/; the first failing bench stops the
# rest, then tests/bench/summary.py prints every figure that ran against its target (from the
# benches' JSON last lines), and the target fails if any bench failed or missed.
BENCH_OUT := $(VENV)/bench
bench: py-setup
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	@rm -rf $(BENCH_OUT) && mkdir -p $(BENCH_OUT); rc=0; \
	for b in tests/bench/bench_*.py; do echo "== $$b"; \
	  $(BIN)/python $$b | tee $(BENCH_OUT)/$$(basename $$b).out; s=$${PIPESTATUS[0]}; \
	  echo $$s > $(BENCH_OUT)/$$(basename $$b).rc; if [ $$s -ne 0 ]; then rc=1; break; fi; done; \
	if [ $$rc -eq 0 ]; then $(MAKE) -C extension build || rc=1; fi; \
	if [ $$rc -eq 0 ]; then for b in tests/bench/bench_*.mjs; do echo "== $$b"; \
	  node $$b | tee $(BENCH_OUT)/$$(basename $$b).out; s=$${PIPESTATUS[0]}; \
	  echo $$s > $(BENCH_OUT)/$$(basename $$b).rc; if [ $$s -ne 0 ]; then rc=1; break; fi; done; fi; \
	$(BIN)/python tests/bench/summary.py $(BENCH_OUT) || rc=1; exit $$rc

clean:
	rm -rf $(VENV) extension/node_modules extension/dist
