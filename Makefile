# The two quick-start commands (README): `make bench` and `make test`.
# Each creates .venv if needed, installs what it needs from the package
# registries, builds the C++ extension, and runs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
# Dev/CI pins: torch 2.13.0 is the CPU build; triton 3.7.1 matches torch 2.13.
PINS   := torch==2.13.0 triton==3.7.1
BUILD_DEPS := scikit-build-core pybind11 cmake ninja
export OMP_NUM_THREADS ?= 2

.PHONY: test bench bench-full lint clean install

$(VENV)/.installed: pyproject.toml CMakeLists.txt $(wildcard csrc/*.cpp csrc/*.h)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install $(PINS) $(BUILD_DEPS)
	$(PIP) install --no-build-isolation -e ".[test,bench]" ruff
	# torchcfm (drop-in tests and the coupling benchmark) imports only torch, numpy and POT; its
	# declared dependencies (lightning, torchvision, jupyter, ...) are not needed.
	$(PIP) install --no-deps torchcfm==1.0.7
	touch $@

install: $(VENV)/.installed

# The test suite (what .ci/run calls).
test: $(VENV)/.installed
	$(PY) -m pytest -q

# The main job: fastot against scipy, POT, lapx and GeomLoss, side by side (~2 minutes).
bench: $(VENV)/.installed
	$(PY) -m bench --quick

# The full benchmark (~25 minutes on 2 cores).
bench-full: $(VENV)/.installed
	$(PY) -m bench

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check fastot tests bench examples
	$(VENV)/bin/ruff format --check fastot tests bench examples

clean:
	rm -rf build $(VENV) .pytest_cache .hypothesis
