# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO := build/demo
DEMO_CACHE := $(DEMO)/cache.sqlite
DEMO_TRIALS ?= 64

.PHONY: install test demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -rs

demo: $(STAMP)
	mkdir -p $(DEMO)
	$(PY) -m benchmarks.models small_cnn -o $(DEMO)/small_cnn.onnx --set channels=32 --set size=32
	$(VENV)/bin/tuner tasks $(DEMO)/small_cnn.onnx
	$(VENV)/bin/tuner tune $(DEMO)/small_cnn.onnx --cache $(DEMO_CACHE) --trials $(DEMO_TRIALS) --json $(DEMO)/tune.json
	$(VENV)/bin/tuner build $(DEMO)/small_cnn.onnx --cache $(DEMO_CACHE) -o $(DEMO)/small_cnn.so
	$(VENV)/bin/tuner bench $(DEMO)/small_cnn.onnx --cache $(DEMO_CACHE) --json $(DEMO)/bench.json

clean:
	rm -rf build
