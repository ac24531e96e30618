# One place for the commands people and CI run.
PYTHON ?= python3
PIP_FLAGS ?= -q --disable-pip-version-check

.PHONY: install demo test test-rust test-python lint bench bench-quick

## Build the Rust extension and install the package with its test dependencies.
install:
	$(PYTHON) -m pip install $(PIP_FLAGS) -e '.[test]'

## The main job: the order-processing workflow, killed mid-way and recovered.
demo: install
	$(PYTHON) examples/order_processing.py

## Everything CI runs: the lint gates, Rust unit tests, then the Python suite.
test: install lint test-rust test-python

test-rust:
	cargo test --locked --lib -q

test-python:
	$(PYTHON) -m pytest -q

lint:
	cargo fmt --check
	cargo clippy --locked --all-targets -q -- -D warnings
	cargo clippy --locked --all-targets --features python -q -- -D warnings
	$(PYTHON) -m ruff check python tests benches examples
	$(PYTHON) -m mypy
	$(PYTHON) -m mypy.stubtest pynenc._core

bench: install
	$(PYTHON) -m benches

bench-quick: install
	$(PYTHON) -m benches --quick
