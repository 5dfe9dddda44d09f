# One-command setup, demo and tests. Needs Python 3.11+, Node.js 18+ and (for headless
# rendering) Mesa's EGL; missing Debian packages are installed when running as root.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
APT_PKGS := libegl1 libegl-mesa0 libgl1-mesa-dri libgles2 libusb-1.0-0

.PHONY: setup setup-test demo test lint clean

$(VENV)/.system-deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "please install:$$missing (sudo apt-get install$$missing)"; exit 1; fi; fi
	@mkdir -p $(VENV) && touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.system-deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	$(VENV)/bin/assetfactory warmup
	touch $@

# The dashboard's browser tests drive Debian's chromium with Playwright (no browser download).
$(VENV)/.test-system-deps: $(VENV)/.system-deps
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq -o DPkg::Lock::Timeout=600 chromium; \
	  else echo "please install: chromium (sudo apt-get install chromium)"; exit 1; fi; fi
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed $(VENV)/.test-system-deps
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# The learned backends' tests run tiny models on the CPU: torch's CPU wheel first, then the
# [learned] extra with every version held by the constraints (nothing may upgrade torch), then
# hy3dgen without its demo-app requirements (see pyproject's [learned] note).
$(VENV)/.installed-learned: $(VENV)/.installed-test constraints-learned.txt
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints-learned.txt -e '.[learned]'
	$(PY) -m pip install -q --no-deps -c constraints-learned.txt hy3dgen
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.installed node_modules/.installed

setup-test: setup $(VENV)/.installed-test $(VENV)/.installed-learned

demo: setup
	$(VENV)/bin/assetfactory demo

test: setup-test
	$(VENV)/bin/pytest

lint: setup-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/test_layers.py   # the layer rule

clean:
	rm -rf $(VENV) node_modules factory-data
