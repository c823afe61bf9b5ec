# `make demo` and `make test` each do all set-up themselves on a fresh Debian machine.
PYTHON := .venv/bin/python

.PHONY: setup demo test
setup:
	scripts/setup.sh

demo: setup
	$(PYTHON) scripts/demo.py

test: setup
	$(PYTHON) -m pytest
