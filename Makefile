# The two quick-start commands: `make coord-check` and `make test`.
VENV ?= .venv
OUT ?= out/quickstart

$(VENV)/.installed: pyproject.toml scripts/setup
	MUSCALE_VENV=$(VENV) scripts/setup
	touch $@

.PHONY: setup coord-check test test-slow
setup: $(VENV)/.installed

coord-check: setup
	$(VENV)/bin/muscale coord-check --mode lrm --out $(OUT)

test: setup
	$(VENV)/bin/python -m pytest -q

test-slow: setup
	$(VENV)/bin/python -m pytest -q -m slow
