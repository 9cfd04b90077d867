# vibewatch: two commands on a fresh machine.
#   make run    local stack: Kafka broker, service with the default model, simulator
#   make test   virtualenv, packages, Kafka jars, promtool; then ruff, mypy and pytest
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv serve-venv system-deps kafka-jars lint test test-slow run reset-local bench bench-peers clean

help:
	@echo "make run          start broker + service + simulator (Ctrl-C stops all); reuses .run"
	@echo "make reset-local  delete the local stack's data (.run: broker, engine state) only"
	@echo "make test         set up everything, then ruff, mypy, pytest (unit + integration)"
	@echo "make test-slow    soak/chaos tests (crash and rebalance equivalence at scale)"
	@echo "make bench        benchmarks against the naive baselines (writes bench/results)"
	@echo "make bench-peers  the same job on Quix Streams, Faust, Bytewax (.venv-peers/)"
	@echo "make lint         ruff and mypy"
	@echo "make venv         the virtualenv with the project and its dev tools (.venv)"
	@echo "make serve-venv   a serving-only install without TensorFlow (.venv-serve)"
	@echo "make kafka-jars   the Kafka broker's jars (deploy/kafka/lib, from Maven)"
	@echo "make system-deps  Debian packages the tests need (promtool, amtool, Java, Maven, ...)"
	@echo "make clean        delete the virtualenv, .run and the tools' caches"

# The dev venv has everything: the serving install, the training extra and the dev tools.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,train]'
	touch $(STAMP)

venv: $(STAMP)

# A serving-only install (no TensorFlow, Keras, matplotlib), as `pip install vibewatch` gives:
# tests/test_lean_install.py runs the end-to-end test with its `vibewatch serve`.
SERVE_VENV := .venv-serve
SERVE_STAMP := $(SERVE_VENV)/.installed
$(SERVE_STAMP): pyproject.toml
	@test -x $(SERVE_VENV)/bin/python || $(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/python -m pip install -q --upgrade pip
	$(SERVE_VENV)/bin/python -m pip install -q -e .
	touch $(SERVE_STAMP)

serve-venv: $(SERVE_STAMP)

# promtool/prometheus, amtool/alertmanager, openssl (test certificates), go (the Kubernetes
# CRD schemas come from Go modules), docker-compose, chromium (the /docs check) and wrk (the
# API bench) come from Debian; installed when missing. kubectl (kubectl kustomize) is
# expected on the machine.
system-deps:
	@missing=""; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v amtool >/dev/null || missing="$$missing prometheus-alertmanager"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v go >/dev/null || missing="$$missing golang"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

kafka-jars: $(STAMP)
	$(PY) deploy/kafka/local_kafka.py fetch

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: system-deps venv serve-venv kafka-jars lint
	$(VENV)/bin/pytest -m "not slow"

test-slow: system-deps venv kafka-jars
	$(VENV)/bin/pytest -m slow

run: system-deps venv kafka-jars
	$(PY) deploy/stack/run_local.py

reset-local: venv
	$(PY) deploy/stack/run_local.py --reset

bench: system-deps venv kafka-jars
	$(PY) bench/run.py

bench-peers: system-deps venv kafka-jars
	$(PY) bench/run.py --scenarios peers

clean:
	rm -rf $(VENV) $(SERVE_VENV) .venv-peers .run .mypy_cache .ruff_cache .pytest_cache
