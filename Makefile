# Quick start: `make demo` runs the whole system on the built-in simulator,
# `make test` runs the test suite. Both set up what they need first.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.edgewatch-installed
# torch 2.13.0 is the CPU build on these machines; installing it explicitly
# first keeps pip from resolving a multi-GB CUDA build for the [train] extra.
TORCH  := torch==2.13.0
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help demo test test-arm64 bench system-deps venv clean

help:
	@echo "make demo   - simulate equipment with faults, run the agent on it, print the scorecard"
	@echo "make test   - run the test suite (installs .venv and Debian packages when missing)"
	@echo "make test-arm64 - only the agent on arm64 under qemu vs the same run on this machine"
	@echo "make bench  - run the benchmarks and write bench-results/ (report.md, results.json, bench.png)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[train,test]'
	touch $(STAMP)

# mosquitto (MQTT tests), chromium (live page test), qemu-user-static (the agent on arm64,
# tests/system/test_arm64.py), systemd (systemd-analyze verifies the unit, tests/system/test_deploy.py) and
# prometheus + prometheus-alertmanager (a real scrape, rule and alert API, tests/agent/ops/test_prometheus.py),
# only when missing. The arm64 Python and its wheels are fetched by the test itself into
# ~/.cache/edgewatch-arm64 ($$EDGEWATCH_ARM64_CACHE), once.
system-deps:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v qemu-aarch64-static >/dev/null 2>&1 || missing="$$missing qemu-user-static"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	command -v prometheus >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v prometheus-alertmanager >/dev/null 2>&1 || missing="$$missing prometheus-alertmanager"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

demo: $(STAMP)
	$(VENV)/bin/edgewatch demo

test: $(STAMP) system-deps
	$(PY) -m pytest

test-arm64: $(STAMP) system-deps
	$(PY) -m pytest tests/system/test_arm64.py -rA

bench: $(STAMP)
	$(VENV)/bin/edgewatch bench --out bench-results

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks .hypothesis
