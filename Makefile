# The two commands of the quick start are `make demo` and `make test`; each does its own set-up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck pytest system-deps venv bench clean

demo: $(STAMP)
	$(BIN)/trtc-monitor demo $(DEMO_ARGS)

test: $(STAMP) system-deps lint typecheck pytest

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# Prometheus, Alertmanager, Redis, Chromium (the status page's browser tests) and faketime (the
# daemon under a stepped wall clock) are real parts of the test suite (Debian packages).
system-deps:
	@if command -v promtool >/dev/null && command -v prometheus >/dev/null \
	    && command -v prometheus-alertmanager >/dev/null && command -v amtool >/dev/null \
	    && command -v redis-server >/dev/null && command -v chromium >/dev/null \
	    && command -v faketime >/dev/null; then \
	  exit 0; \
	fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "system-deps: need the Debian packages prometheus, prometheus-alertmanager," \
	       "redis-server, chromium and faketime; run 'sudo apt-get install prometheus" \
	       "prometheus-alertmanager redis-server chromium faketime' or 'sudo make system-deps'" >&2; \
	  exit 1; \
	fi; \
	echo "installing Debian packages: prometheus prometheus-alertmanager redis-server chromium faketime"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	  --no-install-recommends prometheus prometheus-alertmanager redis-server chromium faketime >/dev/null

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
