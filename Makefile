# livetables: every set-up step a fresh machine needs is a dependency of `demo` and `test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup system-deps test-deps helm-tools kafka-jars registry-jars demo test unit lint format grafana bench clean wheel image

setup: $(VENV)/.installed node_modules/.package-lock.json

# setup.py and the C sources: the editable install compiles the C extensions.
$(VENV)/.installed: pyproject.toml setup.py connectors/_kafkabatch.c connectors/decoders/_jsonrows.c | system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

# The Perspective browser packages, pinned in package-lock.json to the perspective-python version.
node_modules/.package-lock.json: package.json package-lock.json | system-deps
	npm ci --no-audit --no-fund --loglevel=error

system-deps:
	PYTHON=$(PYTHON) bash scripts/install-system-deps.sh

test-deps:
	PYTHON=$(PYTHON) bash scripts/install-system-deps.sh --test

helm-tools:
	bash scripts/install-helm-tools.sh

kafka-jars: setup system-deps
	$(BIN)/python -c "from service.localkafka import ensure_jars; print(ensure_jars())"

# Apicurio Registry for the schema-registry tests, fetched once like the broker's jars.
registry-jars: setup system-deps
	$(BIN)/python -c "from service.localregistry import ensure_registry; print(ensure_registry())"

demo: setup system-deps kafka-jars
	$(BIN)/livetables demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/check_layers.py
	$(BIN)/mypy

test: setup system-deps test-deps kafka-jars registry-jars helm-tools lint
	$(BIN)/python grafana/generate.py --check
	$(BIN)/pytest -ra

unit: setup
	$(BIN)/pytest -q tests/unit

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The benchmark suite (about 15 minutes on 2 cores); writes bench/RESULTS.md.
bench: setup system-deps kafka-jars
	bash bench/peers/setup_csp_env.sh
	$(BIN)/python -m bench

# The wheel and sdist in dist/, carrying the browser files (copied from node_modules).
wheel: setup
	rm -rf dist
	$(BIN)/pip wheel --no-deps --no-build-isolation --wheel-dir dist .
	$(BIN)/python -c "from setuptools import build_meta; build_meta.build_sdist('dist')"

# The container image, with podman from a locally made Debian base (no registry needed).
image: setup
	bash scripts/build-image.sh

grafana: setup
	$(BIN)/python grafana/generate.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache *.egg-info test-output
