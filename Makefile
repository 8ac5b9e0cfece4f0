# Every target sets up what it needs from scratch: a fresh machine needs only Python and pip.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,onnx,plot,kube,fast
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: help venv demo test test-fast lint format bench clean browser kube-binaries kube-cluster kube-cluster-down

help:
	@echo "make demo   - run the seed endpoint on a real model, scale it up under load and back down"
	@echo "make test   - set up and run the test suite"
	@echo "make lint   - ruff, mypy (strict) and the import-layer contracts"
	@echo "make bench  - run the benchmarks in bench/ and print their figures"
	@echo "make browser - install Debian's chromium for the dashboard's browser test (make test runs it)"
	@echo "make kube-cluster      - start the Kubernetes 1.20.2 test cluster and test node (.testbed/kubeconfig)"
	@echo "make kube-cluster-down - stop it"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e ".[$(EXTRAS)]"
	$(BIN)/python -m compileall -q src
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m ebbtide.demo

test: $(STAMP) lint browser kube-binaries
	$(BIN)/python -m pytest

# The dashboard's browser test drives Debian's Chromium (Playwright cannot fetch its own here).
browser:
	@test -x /usr/bin/chromium || sh scripts/install-chromium.sh

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not integration"

lint: $(STAMP)
	$(BIN)/ruff check src tests bench testbed
	$(BIN)/ruff format --check src tests bench testbed
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff check --fix src tests bench testbed
	$(BIN)/ruff format src tests bench testbed

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

# The test cluster's binaries: built once from Debian's kubernetes source package (several
# minutes, installing the build's Debian packages), then reused from the cache.
kube-binaries:
	nice -n 10 bash testbed/build-kubernetes.sh

kube-cluster: $(STAMP) kube-binaries
	$(BIN)/python -m testbed up

kube-cluster-down: $(STAMP)
	$(BIN)/python -m testbed down
