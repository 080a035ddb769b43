# pocketvit: `make demo` and `make test` set up .venv themselves (Python 3.11, pinned stack).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RECIPE ?= recipes/fashion-mnist.yaml
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: demo test test-fast test-slow bench data teacher-weights lint clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=python3"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all,dev]'
	touch $(STAMP)

venv: $(STAMP)

# Fashion-MNIST from Debian's package; elsewhere point the recipe at the idx files with --set data.root=...
data:
	@if [ -f $(FMNIST)/train-images-idx3-ubyte.gz ]; then echo "Fashion-MNIST: $(FMNIST)"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	elif command -v apt-get >/dev/null && command -v sudo >/dev/null; then \
		sudo apt-get update -qq && sudo apt-get install -y -qq dataset-fashion-mnist; \
	else echo "error: Fashion-MNIST not found in $(FMNIST) and apt is not available."; \
		echo "Download the four idx .gz files and run: .venv/bin/pocketvit build $(RECIPE) --set data.root=/path/to/them"; exit 2; fi

demo: $(STAMP) data
	$(VENV)/bin/pocketvit build $(RECIPE)

test: $(STAMP) data
	$(PY) -m pytest -q -m "not slow"

test-slow: $(STAMP) data
	$(PY) -m pytest -q -m slow

# The shipped teacher: 4 epochs from scratch, then 3 more at a lower LR (two recipes, two stages).
teacher-weights: $(STAMP) data
	$(VENV)/bin/pocketvit build recipes/fashion-mnist-teacher.yaml --until teacher
	cp runs/fashion-mnist-teacher/stages/teacher-*/teacher.safetensors recipes/weights/fashion-mnist-teacher-stage1.safetensors
	$(VENV)/bin/pocketvit build recipes/fashion-mnist-teacher-ft.yaml --until teacher
	cp runs/fashion-mnist-teacher-ft/stages/teacher-*/teacher.safetensors recipes/weights/fashion-mnist-teacher.safetensors

lint: $(STAMP)
	$(VENV)/bin/ruff check sdk tests

clean:
	rm -rf runs .pytest_cache

# `make bench`: every runtime of the demo bundle in one interleaved run (JSON + bar chart).
BENCH_BUNDLE := runs/fashion-mnist/bundle
bench: $(STAMP)
	@test -f $(BENCH_BUNDLE)/manifest.json || { echo "error: $(BENCH_BUNDLE) does not exist; run make demo first"; exit 2; }
	$(VENV)/bin/pocketvit bench $(BENCH_BUNDLE) --json --plot runs/fashion-mnist/bench.png > runs/fashion-mnist/bench.json.tmp
	mv runs/fashion-mnist/bench.json.tmp runs/fashion-mnist/bench.json
	@echo "wrote runs/fashion-mnist/bench.json and runs/fashion-mnist/bench.png"

# `make test-device`: the bundle's litert target in a torch-free venv (numpy<2 + tflite-runtime), as on a Raspberry Pi.
.PHONY: test-device
DEVICE_BUNDLE ?= runs/fashion-mnist/bundle
test-device: $(STAMP)
	MAIN_PY=$(PY) PYTHON=$(PYTHON) bash tests/device/run.sh $(DEVICE_BUNDLE)
