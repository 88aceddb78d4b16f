# dicom4qi: `make run` sets up what is missing and runs the quick tier end to end; `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: setup system run test stress bench lint format clean

setup: system $(VENV)/.installed

system:
	@bash scripts/system-deps

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11 or newer is needed (PYTHON=$(PYTHON))"; exit 1; }
	@$(PYTHON) -m venv --help >/dev/null 2>&1 && $(PYTHON) -c 'import ensurepip' 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then apt-get update -q && apt-get install -y -q python3-venv; \
	  else echo "Python's venv module is missing: install python3-venv"; exit 1; fi; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

run: setup
	$(BIN)/dicom4qi corpus lint
	$(BIN)/dicom4qi run --tier quick -j $(JOBS)
	rm -rf build/bundle
	$(BIN)/dicom4qi corpus export --out build/bundle --zip
	$(BIN)/dicom4qi report --bundle-zip "$$(ls build/bundle/dicom4qi-bundle-*.zip)"

test: setup
	$(BIN)/python -m pytest

stress: setup
	$(BIN)/dicom4qi run --tier stress -j 1 --out build/stress-results

bench: setup
	$(BIN)/dicom4qi bench --tier full
	$(BIN)/dicom4qi report

lint: setup
	$(BIN)/python -m pip install -q -e '.[test,lint]'
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/dicom4qi corpus lint
	$(BIN)/dicom4qi schema --check

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf build reports/results reports/site
