# `make demo` and `make test` each do all set-up themselves on a fresh Debian machine.
PYTHON := .venv/bin/python

.PHONY: setup demo test bench
setup:
	scripts/setup.sh

demo: setup
	$(PYTHON) scripts/demo.py

test: setup
	$(PYTHON) -m pytest

# knobs: BENCH_SIZES (GB, default 1,4), BENCH_REPEATS (default 3), BENCH_ROWS (default all)
bench: setup
	$(PYTHON) -m bench --update-docs
