# Everything from nothing: a virtualenv, the package, and the job.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
VCD_DIR ?= ../shared/data/vcd
DEMO ?= demo

.PHONY: install demo test bench clean

$(BIN)/pft-adapters: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# the CPU build of torch; a plain `torch` requirement would pull a multi-GB CUDA build
	$(BIN)/pip install --quiet "torch==2.13.0" || $(BIN)/pip install --quiet torch --index-url https://download.pytorch.org/whl/cpu
	$(BIN)/pip install --quiet -e ".[test,offline-encoder,plots]"
	touch $@

install: $(BIN)/pft-adapters

demo: install
	VCD_DIR=$(VCD_DIR) bash examples/demo.sh $(BIN) $(DEMO)

test: install
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(DEMO) *.egg-info
