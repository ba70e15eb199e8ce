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

# Regenerate the example reports in reports/ and their index (the sweeps take over an hour on 2 cores).
reports: setup
	rm -rf out/ex-mup out/ex-lrm out/lr_transfer out/noise_wd_equilibrium out/lrm_width_scaling out/lrm_width_scaling_hybrid \
		out/lr_only_matched out/lrm_attention_mup out/hybrid_dt_multiplier
	$(VENV)/bin/muscale coord-check --mode mup --family transformer --out out/ex-mup
	$(VENV)/bin/muscale coord-check --mode lrm --out out/ex-lrm
	$(VENV)/bin/muscale sweep studies/lr_transfer.toml --out out/lr_transfer
	$(VENV)/bin/muscale sweep studies/noise_wd_equilibrium.toml --out out/noise_wd_equilibrium
	$(VENV)/bin/muscale sweep studies/lrm_width_scaling.toml --out out/lrm_width_scaling
	$(VENV)/bin/muscale sweep studies/lrm_width_scaling_hybrid.toml --out out/lrm_width_scaling_hybrid
	$(VENV)/bin/muscale sweep studies/lr_only_matched.toml --out out/lr_only_matched
	$(VENV)/bin/muscale sweep studies/lrm_attention_mup.toml --out out/lrm_attention_mup
	$(VENV)/bin/muscale sweep studies/hybrid_dt_multiplier.toml --out out/hybrid_dt_multiplier
	cp out/ex-mup/report.html reports/transformer-mup.html
	cp out/ex-lrm/report.html reports/transformer-lrm.html
	cp out/lr_transfer/report.html reports/lr_transfer.html
	cp out/noise_wd_equilibrium/report.html reports/noise_wd_equilibrium.html
	cp out/lrm_width_scaling/report.html reports/lrm_width_scaling.html
	cp out/lrm_width_scaling_hybrid/report.html reports/lrm_width_scaling_hybrid.html
	cp out/lr_only_matched/report.html reports/lr_only_matched.html
	cp out/lrm_attention_mup/report.html reports/lrm_attention_mup.html
	cp out/hybrid_dt_multiplier/report.html reports/hybrid_dt_multiplier.html
	$(VENV)/bin/python -c "from muscale.report import write_index; write_index('reports')"
