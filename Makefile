# Two entry points for a fresh machine (Python 3.10-3.12, g++, make):
#   make demo   set up .venv, build the embedded default model and verify it in Verilator against qonnx
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.rtlgen-installed
PYTEST_ARGS ?=

.PHONY: setup demo test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[test,synth]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/rtlgen build -o build/default --force
	$(VENV)/bin/rtlgen run build/default --inputs rtlgen/models/default_digits_inputs.npy --out build/default/outputs.npy --stats build/default/stats.json
	$(VENV)/bin/rtlgen verify rtlgen/models/default_digits_mlp.onnx build/default --inputs rtlgen/models/default_digits_inputs.npy --backpressure 0.3

test: setup
	$(VENV)/bin/python -m pytest -n 2 --dist loadgroup -q --durations=25 $(PYTEST_ARGS)

clean:
	rm -rf build .pytest_cache
