# Every install step lives here: a clean clone needs only Python 3.11+, Node.js 20+ and make.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CDK_CLI ?= aws-cdk@2.1148.1
LAYER_PLATFORM ?= manylinux2014_aarch64
# The Lambda runtime's Python (RUNTIME in infra/constructs/functions.py; tests/infra checks they agree).
LAYER_PYTHON ?= 3.13
# That interpreter when the machine has one (on PATH or kept by pyenv), else empty: `make test` then
# also runs the unit and integration tests on it, in RUNTIME_VENV (docs/decisions.md).
RUNTIME_PYTHON ?= $(shell for c in python$(LAYER_PYTHON) \
	$${PYENV_ROOT:-$$HOME/.pyenv}/versions/$(LAYER_PYTHON)*/bin/python$(LAYER_PYTHON); do \
	"$$c" -c 'import sys; sys.exit(not sys.version.startswith("$(LAYER_PYTHON)."))' >/dev/null 2>&1 \
	&& { echo "$$c"; break; }; done)
RUNTIME_VENV ?= .venv-py$(subst .,,$(LAYER_PYTHON))

# Security gates (`make check`): checkov has heavy, conflicting pins, so it gets its own virtualenv.
CHECKOV_VERSION ?= 3.3.30
CHECKOV_VENV ?= .venv-checkov
GATES_OUT ?= build/gates/cdk.out
GATES_TEMPLATE := $(GATES_OUT)/ByomGateway.template.json

export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION=1
export PYTHONDONTWRITEBYTECODE=1

.PHONY: install run demo test check test-runtime runtime-venv lint format synth layers deploy bench clean automation-example

$(VENV)/.installed: requirements.txt requirements-dev.txt layers/deps/requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.3
	$(PY) -m pip install --quiet -r requirements-dev.txt
	# The `byom` admin CLI; its dependencies are pinned in requirements-dev.txt already.
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) -m local_stack

# The local stack with a ready tenant `demo`: prints (and writes to .byom-demo.env) its keys.
demo: install
	$(PY) -m local_stack --demo

# Two lanes, one per core (docs/testing.md). The two Pythons' virtualenvs are built at once; then
# the main lane runs MAIN_TESTS on this Python: the end-to-end tests (the local stack runs the
# handlers on it), the local stack's own tests and the infrastructure tests. Beside it, logged to
# build/, the Lambda runtime's Python runs the rest of tests/unit and tests/integration
# (test-runtime), then the gates (`make check`). Every test runs once; any lane failing fails
# `make test`. `pytest` alone still runs every folder on this Python.
MAIN_TESTS ?= tests/e2e tests/integration/local_stack tests/unit/local_stack tests/infra
RUNTIME_TESTS ?= tests/unit tests/integration --ignore=tests/unit/local_stack --ignore=tests/integration/local_stack
test:
	@mkdir -p build
	@$(MAKE) --no-print-directory runtime-venv > build/runtime-venv.log 2>&1 & venv=$$!; \
	$(MAKE) --no-print-directory install; installed=$$?; wait $$venv; test $$installed -eq 0 || exit 1; \
	{ $(MAKE) --no-print-directory test-runtime > build/test-runtime.log 2>&1; rt=$$?; \
	  $(MAKE) --no-print-directory check > build/check.log 2>&1; gates=$$?; \
	  test $$gates -eq 0 || exit 2; test $$rt -eq 0 || exit 1; } & beside=$$!; \
	$(PY) -m pytest $(MAIN_TESTS); main=$$?; \
	wait $$beside; side=$$?; \
	echo "--- security gates (build/check.log):"; tail -n 15 build/check.log; \
	echo "--- unit and integration tests on the Lambda runtime's Python (build/test-runtime.log):"; \
	tail -n 25 build/test-runtime.log; \
	test $$side -ne 2 || echo "make test: the security gates failed (build/check.log)"; \
	test $$side -ne 1 || echo "make test: the tests on the runtime's Python failed (build/test-runtime.log)"; \
	test $$main -eq 0 && test $$side -eq 0

# Synthesizes the template once (bundling off, cdk.json's context, cdk-nag on), then lints it with
# cfn-lint (.cfnlintrc.yaml) and checkov (skips with reasons: infra/checkov_skips.py), and the runtime
# code with bandit (no medium or high finding).
check: install $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
	rm -rf $(GATES_OUT)
	BYOM_BUNDLING=0 CDK_OUTDIR=$(GATES_OUT) $(PY) app.py
	$(VENV)/bin/cfn-lint $(GATES_TEMPLATE)
	$(CHECKOV_VENV)/bin/checkov --framework cloudformation --file $(GATES_TEMPLATE) \
		--compact --quiet --skip-download
	$(VENV)/bin/bandit --quiet --recursive --severity-level medium layers/common/python/byom functions

$(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION):
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check 'checkov==$(CHECKOV_VERSION)'
	touch $@

# RUNTIME_TESTS on the Lambda runtime's Python; on this one when the machine has no such
# interpreter, so that they still run once in `make test`.
ifeq ($(strip $(RUNTIME_PYTHON)),)
runtime-venv:
test-runtime: install
	@echo "note: no Python $(LAYER_PYTHON) on this machine (PATH or pyenv): these tests run on $$($(PY) -V)"
	$(PY) -m pytest $(RUNTIME_TESTS) -q
else
runtime-venv: $(RUNTIME_VENV)/.installed
test-runtime: $(RUNTIME_VENV)/.installed
	$(RUNTIME_VENV)/bin/python -m pytest $(RUNTIME_TESTS) -q

$(RUNTIME_VENV)/.installed: requirements.txt requirements-dev.txt layers/deps/requirements.txt
	test -x $(RUNTIME_VENV)/bin/python || $(RUNTIME_PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/python -m pip install --quiet --upgrade pip==25.3
	$(RUNTIME_VENV)/bin/python -m pip install --quiet -r requirements-dev.txt
	touch $@
endif

# Benchmarks (about 30 minutes; the first run builds LiteLLM's own virtualenv in bench/.venv-litellm).
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

# Both layers for Lambda (arm64, the stack's Python runtime), built with pip: no Docker. The
# dependencies come from wheels (no code of theirs runs here), then the runtime's Python compiles them
# and a copy of the common layer: /opt is read-only in Lambda, so a layer without bytecode for its
# Python is compiled afresh at every cold start. `unchecked-hash` bytecode records no source
# timestamp (the zip's and Lambda's extraction's would not match it anyway), is the same bytes for the
# same source (asset hashes hold), and is used without reading the source again: the layer ships
# both together, so they cannot drift. pip's own bytecode would be the build machine's Python's.
layers: install
	rm -rf build/layers/deps build/layers/common
	$(PY) -m pip install --quiet --no-compile --only-binary=:all: --platform $(LAYER_PLATFORM) \
		--python-version $(LAYER_PYTHON) --implementation cp \
		--target build/layers/deps/python -r layers/deps/requirements.txt
	mkdir -p build/layers/common
	cp -R layers/common/python build/layers/common/python
	find build/layers/common -name __pycache__ -type d -prune -exec rm -rf {} +
	$(LAYER_BYTECODE)

ifeq ($(strip $(RUNTIME_PYTHON)),)
LAYER_BYTECODE = @echo "note: no Python $(LAYER_PYTHON) on this machine (PATH or pyenv): the layers ship no \
bytecode, so Lambda compiles them at every cold start (see docs/performance.md)"
else
LAYER_BYTECODE = $(RUNTIME_PYTHON) -m compileall -q -j 0 --invalidation-mode unchecked-hash \
	build/layers/deps/python build/layers/common/python
endif

deploy: layers
	BYOM_BUNDLING=1 npx --yes $(CDK_CLI) deploy

clean:
	rm -rf $(VENV) $(RUNTIME_VENV) $(CHECKOV_VENV) build cdk.out .pytest_cache .mypy_cache .ruff_cache

# An automation example on the local stack, end to end (examples/automations/; EXAMPLE=guardduty|cloudwatch).
EXAMPLE ?= guardduty
automation-example: install
	PYTHONPATH=.:layers/common/python $(PY) -m examples.automations.run $(EXAMPLE)
