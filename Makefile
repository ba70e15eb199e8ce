# The two quick-start commands: `make coord-check` and `make test`.
VENV ?= .venv
OUT ?= out/quickstart

$(VENV)/.installed: pyproject.toml scripts/setup
	MUSCALE_VENV=$(VENV) scripts/setup
	touch $@

.PHONY: setup coord-check test test-fast lint baseline reports gold
setup: $(VENV)/.installed

coord-check: setup
	$(VENV)/bin/muscale coord-check --mode lrm --out $(OUT)

test: setup
	scripts/install-browser || echo "no Chromium: the browser tests will be skipped"
	$(VENV)/bin/python -m pytest -q -n auto --dist loadfile

# The edit loop: everything but the science and integration tests (which `make test` runs).
test-fast: setup
	$(VENV)/bin/python -m pytest -q -n auto --dist loadfile -m "not slow and not science and not integration"

# ruff's lint and format check over the tree, and a type check of the public API.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Refresh the golden files tests/test_gold.py compares `muscale fit` with (GOLD=records: retrain their inputs too).
gold: setup
	$(VENV)/bin/python tests/gold/build.py $(or $(GOLD),outputs)

# Refresh the baseline muscale gates itself against (tests/test_gate.py runs the same check).
baseline: setup
	rm -rf out/ci-baseline
	$(VENV)/bin/muscale coord-check --mode mup --family mlp --widths 64,128,256,512 --steps 3 --seeds 2 \
		--device cpu --jobs 1 --out out/ci-baseline
	$(VENV)/bin/muscale baseline out/ci-baseline -o baselines/mlp-mup.toml --metric act_rms --metric dact_rms

# Regenerate the example reports in reports/ and their index: the two coordinate checks, then every
# bundled study, its report named after its file (the sweeps take over an hour on 2 cores).
STUDIES := $(basename $(notdir $(wildcard studies/*.toml)))
reports: setup
	rm -rf out/ex-mup out/ex-lrm $(addprefix out/,$(STUDIES))
	$(VENV)/bin/muscale coord-check --mode mup --family transformer --out out/ex-mup
	$(VENV)/bin/muscale coord-check --mode lrm --out out/ex-lrm
	cp out/ex-mup/report.html reports/transformer-mup.html
	cp out/ex-lrm/report.html reports/transformer-lrm.html
	for study in $(STUDIES); do \
		$(VENV)/bin/muscale sweep studies/$$study.toml --out out/$$study && cp out/$$study/report.html reports/$$study.html || exit 1; \
	done
	$(VENV)/bin/python -c "from muscale.report import write_index; write_index('reports')"
