# livetables: every set-up step a fresh machine needs is a dependency of `demo` and `test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup system-deps kafka-jars demo test unit lint format clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

system-deps:
	bash scripts/install-system-deps.sh

kafka-jars: setup system-deps
	$(BIN)/python -c "from service.localkafka import ensure_jars; print(ensure_jars())"

demo: setup system-deps kafka-jars
	$(BIN)/livetables demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup system-deps kafka-jars lint
	$(BIN)/pytest -ra

unit: setup
	$(BIN)/pytest -q tests/unit

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
