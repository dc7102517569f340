# kodev: the two commands of the quick start are `make demo` and `make test`.
# Both install what they need (Debian packages, Python packages, crane) first.
SHELL := /bin/bash
# kodev and its test tools live in a project virtual environment, never in the machine's
# own Python: `. .venv/bin/activate` puts `kodev` on PATH.
SYSTEM_PYTHON ?= python3
VENV := $(CURDIR)/.venv
PYTHON ?= $(VENV)/bin/python
export GOTOOLCHAIN ?= local
export GOFLAGS ?= -mod=mod
TOOLS_BIN := $(HOME)/.cache/kodev/tools/bin
CRANE_VERSION := v0.21.9
APT_PACKAGES := python3-venv docker-registry skopeo umoci runc apache2-utils openssl zsh fish
export PATH := $(VENV)/bin:$(TOOLS_BIN):$(PATH)

testenv-build:
	tests/testenv/build.sh

# The real Skaffold CLI for tests/skaffold (built from its Go module, cached; ~6 min once).
skaffold:
	@tests/skaffold/build.sh >/dev/null

# The real OpenTofu CLI for tests/terraform (built from its Go module, cached; ~10 min once).
tofu:
	@tests/terraform/build.sh >/dev/null

# The real Argo Rollouts controller for tests/fixtures/crds.py (built from its Go module,
# cached; ~9 min once).
argo-rollouts:
	@tests/testenv/argo.sh controller >/dev/null

.PHONY: skaffold tofu argo-rollouts testenv-build help deps apt-deps py-deps go-tools lint unit test test-only demo bench testenv-up testenv-down clean

help:
	@echo "make demo   build the example app, push it to a local registry, run it (runc) and deploy it"
	@echo "make test   install everything, start the test environment, run lint and all tests"
	@echo "make bench  compare kodev with ko and go build; time kodev up (rollout and --live) on the real node; the TUI's CPU; Skaffold with kodev vs its ko builder; a no-change tofu plan"

deps: apt-deps py-deps go-tools

apt-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/bin/python:
	$(SYSTEM_PYTHON) -m venv $(VENV)

# editable_mode=compat: a plain path in a .pth file; setuptools' default editable finder
# makes every Python start in the venv import pathlib and re (~20-40 ms per kodev call).
py-deps: $(VENV)/bin/python
	@$(PYTHON) -m pip install -q --disable-pip-version-check -e '.[test]' \
	  --config-settings editable_mode=compat

go-tools:
	@mkdir -p $(TOOLS_BIN)
	@[ -x $(TOOLS_BIN)/crane ] || GOBIN=$(TOOLS_BIN) go install github.com/google/go-containerregistry/cmd/crane@$(CRANE_VERSION)

lint: py-deps
	$(PYTHON) -m ruff check kodev tests bench examples
	$(PYTHON) -m mypy kodev

testenv-up: deps
	tests/testenv/up.sh

testenv-down:
	tests/testenv/down.sh

# Unit tests and registry/runc tests only: no Kubernetes needed.
unit: deps tofu
	$(PYTHON) -m pytest -m "not kube" -q

test: deps lint skaffold tofu argo-rollouts
	@set -e; out=$$(tests/testenv/up.sh 2>&1) || { echo "$$out"; exit 1; }; echo "$$out"; \
	started=1; case "$$out" in *"already running"*) started=0;; esac; \
	status=0; $(PYTHON) -m pytest -q -rs || status=$$?; \
	if [ $$started = 1 ]; then tests/testenv/down.sh; fi; \
	exit $$status

demo: deps
	PYTHON=$(PYTHON) bash examples/demo.sh

bench: deps skaffold tofu
	$(PYTHON) bench/run.py
	$(PYTHON) bench/up.py
	$(PYTHON) bench/tui.py
	$(PYTHON) bench/skaffold.py --dev
	$(PYTHON) bench/terraform.py

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
