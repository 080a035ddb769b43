# pocketvit: `make demo` and `make test` set up .venv themselves (Python 3.11, pinned stack).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RECIPE ?= recipes/fashion-mnist.yaml
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: demo test test-fast test-slow test-slow-ci test-zoo bench bench-zoo data teacher-weights lint clean photos \
	photos-demo docs fashion-mnist-small fashion-mnist-50

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

# $(call apt_get,PACKAGES): apt-get install as root (or through sudo -n); where neither works, say so and go on:
# the tests that need the packages then skip, naming them
apt_get = if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null; } || echo "warning: apt-get could not install $(1)"; \
	elif command -v apt-get >/dev/null && sudo -n true 2>/dev/null; then \
		sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null || echo "warning: apt-get could not install $(1)"; \
	else echo "note: cannot install $(1) here (needs apt-get as root): the tests that need them are skipped"; fi

# OpenSSH's server and client: `bench/verify --device ssh://` are tested against a real sshd on 127.0.0.1
.PHONY: ssh-tools arm-tools test-arm
ssh-tools:
	@if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null || ! command -v ssh-keygen >/dev/null; then \
		$(call apt_get,openssh-server openssh-client); fi

test: $(STAMP) data ssh-tools
	$(PY) -m pytest -q -m "not slow"

# `make test-fast`: the same suite as `make test` (everything but the slow end-to-end tests)
test-fast: test

# the slow suites and the emulated Raspberry Pi (tests/arm: its first run builds a 7.5 GB image, see make test-arm)
test-slow: $(STAMP) data ssh-tools arm-tools
	$(PY) -m pytest -q -m "slow or arm"

# `make test-slow-ci`: the slow tests CI runs (.ci/run), the ones guarding what the fast suite cannot: the int8 and
# QAT builds, early exits on ExecuTorch/LiteRT, 2-process training, drop-in files and their agreement, the
# torch-free device venv, the Kotlin vectors, timm parity on three families (a CNN, a ViT, a reparameterised
# MobileCLIP tower), EfficientNet-Lite0's real photos. Chosen from per-file CPU times so that the whole .ci/run
# fits in an hour on a 2-core machine (docs/getting-started.md, "CI"). Left to `make test-slow`: the other timm
# families, the bench zoo (a benchmark, not a test) and the window demo under Xvfb.
SLOW_CI := tests/exits tests/export/test_quantize_build.py tests/export/test_quantize.py \
	tests/benchmarks/test_int8_floor.py tests/distill tests/export/test_dropin.py \
	tests/export/test_dropin_agreement.py tests/apps/test_kotlin_vectors.py tests/apps/test_raspberry_pi.py \
	tests/cli tests/models tests/clip/test_text.py tests/clip/test_inherit.py \
	tests/clip/test_text_encoder_bundle.py tests/runtime tests/export/test_rewrites.py \
	tests/export/test_rewrites_conv.py
TIMM_CI := resnet10t or deit_tiny or mci0 or not parity
test-slow-ci: $(STAMP) data ssh-tools
	$(PY) -m pytest -q -m slow $(SLOW_CI)
	$(PY) -m pytest -q -m slow tests/export/test_export_timm.py -k "$(TIMM_CI)"

# The shipped teachers: 4 epochs from scratch, then 3 more at a lower LR (both with label smoothing), then 3 more
# without label smoothing (the demo's teacher: fashion-mnist-teacher-ft2.safetensors); three recipes, three stages.
teacher-weights: $(STAMP) data
	$(VENV)/bin/pocketvit build recipes/fashion-mnist-teacher.yaml --until teacher
	cp runs/fashion-mnist-teacher/teacher.safetensors recipes/weights/fashion-mnist-teacher-stage1.safetensors
	$(VENV)/bin/pocketvit build recipes/fashion-mnist-teacher-ft.yaml --until teacher
	cp runs/fashion-mnist-teacher-ft/teacher.safetensors recipes/weights/fashion-mnist-teacher.safetensors
	$(VENV)/bin/pocketvit build recipes/fashion-mnist-teacher-ft2.yaml --until teacher
	cp runs/fashion-mnist-teacher-ft2/teacher.safetensors recipes/weights/fashion-mnist-teacher-ft2.safetensors

# `make photos`: the real photos shipped with scikit-image, scikit-learn and matplotlib, as an image folder;
# `make photos-demo`: recipes/photos-lite0.yaml on them (label-free distillation of EfficientNet-Lite0).
PHOTOS ?= runs/photos
photos: $(STAMP)
	$(VENV)/bin/pocketvit data photos $(PHOTOS)
photos-demo: photos
	$(VENV)/bin/pocketvit build recipes/photos-lite0.yaml --set data.root=$(PHOTOS)

# `make fashion-mnist-small`: 50 labeled Fashion-MNIST images per class as PNG files, the rest of the training split
# unlabeled, the test split (runs/fashion-mnist-small/{labeled,unlabeled,test}); `make fashion-mnist-50`: Lite0
# fine-tuned on them and distilled through labeled + unlabeled images (recipes/fashion-mnist-50.yaml).
fashion-mnist-small: $(STAMP) data
	$(VENV)/bin/pocketvit data fashion-mnist-small runs/fashion-mnist-small
fashion-mnist-50: $(STAMP) data
	$(VENV)/bin/pocketvit build recipes/fashion-mnist-50.yaml

lint: $(STAMP)
	$(VENV)/bin/ruff check sdk tests apps benchmarks

# `make docs`: the MkDocs site (mkdocs.yml, docs/) into site/; --strict turns every warning (a broken link) into an error.
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict -d site

clean:
	rm -rf runs .pytest_cache

# `make bench`: every runtime of the demo bundle in one interleaved run (JSON + bar chart).
BENCH_BUNDLE := runs/fashion-mnist/bundle
bench: $(STAMP)
	@test -f $(BENCH_BUNDLE)/manifest.json || { echo "error: $(BENCH_BUNDLE) does not exist; run make demo first"; exit 2; }
	$(VENV)/bin/pocketvit bench $(BENCH_BUNDLE) --json --plot runs/fashion-mnist/bench.png > runs/fashion-mnist/bench.json.tmp
	mv runs/fashion-mnist/bench.json.tmp runs/fashion-mnist/bench.json
	@echo "wrote runs/fashion-mnist/bench.json and runs/fashion-mnist/bench.png"

# `make bench-zoo`: ImageNet-size timm models, raw toolchain vs pocketvit exports, one interleaved run each.
bench-zoo: $(STAMP)
	$(VENV)/bin/pocketvit bench-zoo --out runs/bench-zoo

# `make test-zoo`: every target (fp32, drop-in, int8) on the smallest timm model of 54 families, each file checked on
# its runtime; writes the coverage matrix to docs/results/zoo-coverage.json (+ .md) and the table in docs/zoo.md.
# Resumable (rows are written as each model finishes); ZOO_SIZE=224 adds the 224 x 224 rows, ZOO_ARGS passes more
# options (e.g. ZOO_ARGS="-t executorch,litert,onnx,coreml"). Hours on a 2-core machine (docs/zoo.md says how long).
ZOO_SIZE ?=
ZOO_ARGS ?=
test-zoo: $(STAMP)
	$(VENV)/bin/pocketvit zoo-coverage --out docs/results --page docs/zoo.md $(if $(ZOO_SIZE),--size $(ZOO_SIZE)) $(ZOO_ARGS)

# `make test-arm`: an emulated 64-bit Raspberry Pi 4 (tests/arm: Debian bookworm arm64 by debootstrap, qemu user mode
# with a Cortex-A72, Python 3.11, aarch64 wheels): the torch-free runtime's top-1 vs x86 on 512 images, ExecuTorch's
# aarch64 wheel, apps/raspberry-pi/install.sh, and bench/verify --device over the emulated Pi's sshd. The image is
# cached in ~/.cache/pocketvit/arm (first build: see tests/arm/setup.sh); root is needed for debootstrap and mounts.
arm-tools:
	@if ! command -v debootstrap >/dev/null || ! command -v qemu-aarch64-static >/dev/null || ! command -v update-binfmts >/dev/null; then \
		$(call apt_get,debootstrap qemu-user-static binfmt-support); fi
test-arm: $(STAMP) data ssh-tools arm-tools
	$(PY) -m pytest -q -s -m arm tests/arm

# `make test-device`: the bundle's litert target in a torch-free venv (numpy<2 + tflite-runtime), as on a Raspberry Pi.
.PHONY: test-device
DEVICE_BUNDLE ?= runs/fashion-mnist/bundle
test-device: $(STAMP)
	MAIN_PY=$(PY) PYTHON=$(PYTHON) bash tests/device/run.sh $(DEVICE_BUNDLE)

# `make tools-venv`: tflite-support 0.4.4 (pins protobuf<4, so not in .venv; needs Debian's libusb-1.0-0), optional:
# pocketvit writes TFLite metadata itself; tests use tflite-support as a second reader of it when this venv exists
# (found as .venv-tools/bin/python, or $POCKETVIT_TFLITE_TOOLS_PYTHON).
TOOLS_VENV := .venv-tools
.PHONY: tools-venv mediapipe-venv test-mediapipe
$(TOOLS_VENV)/.installed:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=python3"; exit 2; }
	@if ! ldconfig -p 2>/dev/null | grep -q libusb-1.0; then \
		if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
			apt-get install -y -qq libusb-1.0-0 || { apt-get update -qq && apt-get install -y -qq libusb-1.0-0; }; \
		elif command -v apt-get >/dev/null && command -v sudo >/dev/null; then sudo apt-get install -y -qq libusb-1.0-0; \
		else echo "error: tflite-support needs libusb-1.0 (Debian/Ubuntu: apt-get install libusb-1.0-0)"; exit 2; fi; fi
	test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install -q "tflite-support==0.4.4" "protobuf<4" "numpy<2"
	$(TOOLS_VENV)/bin/python -c "from tflite_support.metadata_writers import image_classifier"
	touch $@
tools-venv: $(TOOLS_VENV)/.installed

# `make test-mediapipe`: MediaPipe Tasks' ImageClassifier and ImageEmbedder (PyPI mediapipe, its own venv, no pocketvit
# on its path) on drop-in .tflite files, against pocketvit predict (tests/{export,clip}/test_dropin_mediapipe.py, slow).
MEDIAPIPE_VENV := .venv-mediapipe
$(MEDIAPIPE_VENV)/.installed:
	test -x $(MEDIAPIPE_VENV)/bin/python || $(PYTHON) -m venv $(MEDIAPIPE_VENV)
	$(MEDIAPIPE_VENV)/bin/python -m pip install -q "mediapipe==1.2.2"
	touch $@
mediapipe-venv: $(MEDIAPIPE_VENV)/.installed
test-mediapipe: $(STAMP) data mediapipe-venv
	$(PY) -m pytest -q -m slow tests/export/test_dropin_mediapipe.py tests/clip/test_dropin_mediapipe.py
