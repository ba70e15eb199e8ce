# The two quick-start commands: `make coord-check` and `make test`.
VENV ?= .venv
OUT ?= out/quickstart

$(VENV)/.installed: pyproject.toml scripts/setup
	MUSCALE_VENV=$(VENV) scripts/setup
	touch $@

.PHONY: setup coord-check test baseline reports
setup: $(VENV)/.installed

coord-check: setup
	$(VENV)/bin/muscale coord-check --mode lrm --out $(OUT)

test: setup
	scripts/install-browser || echo "no Chromium: the browser tests will be skipped"
	$(VENV)/bin/python -m pytest -q

# Refresh the baseline muscale gates itself against (tests/test_gate.py runs the same check).
baseline: setup
	rm -rf out/ci-baseline
	$(VENV)/bin/muscale coord-check --mode mup --family mlp --widths 64,128,256,512 --steps 3 --seeds 2 \
		--device cpu --jobs 1 --out out/ci-baseline
	$(VENV)/bin/muscale baseline out/ci-baseline -o baselines/mlp-mup.toml --metric act_rms --metric dact_rms

# Regenerate the example reports in reports/ and their index (the sweep takes ~10 minutes).
reports: setup
	rm -rf out/ex-mup out/ex-lrm out/lr_transfer
	$(VENV)/bin/muscale coord-check --mode mup --family transformer --out out/ex-mup
	$(VENV)/bin/muscale coord-check --mode lrm --out out/ex-lrm
	$(VENV)/bin/muscale sweep studies/lr_transfer.toml --out out/lr_transfer
	cp out/ex-mup/report.html reports/transformer-mup.html
	cp out/ex-lrm/report.html reports/transformer-lrm.html
	cp out/lr_transfer/report.html reports/lr_transfer.html
	$(VENV)/bin/python -c "from muscale.report import write_index; write_index('reports')"
