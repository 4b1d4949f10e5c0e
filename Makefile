# gatekit: every entry point the README and CI use.
# `make run` sets up a local virtual environment and trains the main recipe;
# `make test` sets it up and runs the fast test suite.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
RECIPE ?= recipes/aim_metadrive.yaml
COMPARISON ?= recipes/compare_metadrive.yaml
ARGS   ?=

LATEST ?= .venv-latest

.PHONY: setup run compare test test-slow test-latest lint clean

# torch goes in first, pinned to the CPU build: a plain `torch` requirement would pull a
# multi-GB CUDA build. The stamp file re-runs setup when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[all,dev]"
	touch $@

setup: $(VENV)/.installed

run: setup
	$(VENV)/bin/gatekit train $(RECIPE) $(ARGS)

# every method x seed of a comparison, one process per core; re-running skips finished runs
compare: setup
	$(VENV)/bin/gatekit compare $(COMPARISON) $(ARGS)

test: setup
	$(PY) -m pytest -q

# The core on today's stack: a second environment with the newest gymnasium and SB3 and no
# imitation (which pins gymnasium 0.29), plus Minari; tests of imitation, MetaDrive and
# MiniGrid skip there.
$(LATEST)/.installed: pyproject.toml
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip
	$(LATEST)/bin/python -m pip install -q torch==2.13.0
	$(LATEST)/bin/python -m pip install -q -e ".[sb3,minari]" pytest hypothesis
	$(LATEST)/bin/python -m pip install -q --upgrade gymnasium stable-baselines3
	touch $@

test-latest: $(LATEST)/.installed
	@$(LATEST)/bin/python -c "import gymnasium, stable_baselines3, torch; print(f'newest stack: gymnasium {gymnasium.__version__}, stable-baselines3 {stable_baselines3.__version__}, torch {torch.__version__}')"
	$(LATEST)/bin/python -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

lint: setup
	$(VENV)/bin/ruff check gatekit tests bench
	$(VENV)/bin/mypy gatekit

clean:
	rm -rf $(VENV) $(LATEST) .pytest_cache .mypy_cache .ruff_cache
