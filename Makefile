# Every install step lives here: a clean clone needs only Python 3.11+, Node.js 20+ and make.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CDK_CLI ?= aws-cdk@2.1148.1
LAYER_PLATFORM ?= manylinux2014_aarch64
LAYER_PYTHON ?= 3.14

export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION=1
export PYTHONDONTWRITEBYTECODE=1

.PHONY: install run test lint format synth layers deploy bench clean automation-example

$(VENV)/.installed: requirements.txt requirements-dev.txt layers/deps/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.3
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) -m local_stack

test: install
	$(PY) -m pytest

# Benchmarks (about 17 minutes; the first run builds LiteLLM's own virtualenv in bench/.venv-litellm).
bench: install
	$(PY) -m bench

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

synth: install
	$(PY) app.py

# The dependency layer for Lambda (arm64, the stack's Python runtime), built with pip: no Docker.
layers: install
	rm -rf build/layers/deps
	$(PY) -m pip install --quiet --only-binary=:all: --platform $(LAYER_PLATFORM) \
		--python-version $(LAYER_PYTHON) --implementation cp \
		--target build/layers/deps/python -r layers/deps/requirements.txt

deploy: layers
	BYOM_BUNDLING=1 npx --yes $(CDK_CLI) deploy

clean:
	rm -rf $(VENV) build cdk.out .pytest_cache .mypy_cache .ruff_cache

# An automation example on the local stack, end to end (examples/automations/; EXAMPLE=guardduty|cloudwatch).
EXAMPLE ?= guardduty
automation-example: install
	PYTHONPATH=.:layers/common/python $(PY) -m examples.automations.run $(EXAMPLE)
