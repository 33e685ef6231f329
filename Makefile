# Two commands for everyone: `make lab` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
# The stamp holds a hash of what the install depends on: a fresh clone or a git checkout gives
# files new dates, and a date-based stamp would then reinstall everything for nothing.
DEPS_HASH := $(shell $(PYTHON) -c "import hashlib; print(hashlib.sha256(open('pyproject.toml', 'rb').read() + open('constraints.txt', 'rb').read()).hexdigest()[:16])")
LAB_ARGS ?=
PYTEST_ARGS ?=
# Every built notebook in every language (student versions of exercises are tested by tests/).
NOTEBOOKS = $(wildcard notebooks/*/[0-9][0-9]-*.ipynb)
# Jupyter's runtime files (kernel connection files) stay inside .venv too.
JUPYTER_ENV := JUPYTER_RUNTIME_DIR=$(CURDIR)/$(VENV)/share/jupyter/runtime
# Tests never touch the network.
TEST_ENV := $(JUPYTER_ENV) OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg COURSE_TESTING=1 PYTHONHASHSEED=0 HF_HOME=$(CURDIR)/$(VENV)/test-cache/hf HF_HUB_CACHE=$(CURDIR)/$(VENV)/test-cache/hf/hub COURSE_CACHE=$(CURDIR)/$(VENV)/test-cache/course

.PHONY: lab test browser unit notebooks check-notebooks exercises bench doctor lint clean install

ifneq ($(shell cat $(STAMP) 2>/dev/null),$(DEPS_HASH))
.PHONY: $(STAMP)
endif
$(STAMP):
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -c constraints.txt -e ".[test,lab,grading]"
	$(PIP) install --quiet --no-deps -c constraints.txt taming-transformers-rom1504
	echo $(DEPS_HASH) > $(STAMP)

install: $(STAMP)

# Jupyter refuses to run as root without --allow-root (containers, Binder-like machines).
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(STAMP)
	$(JUPYTER_ENV) $(VENV)/bin/jupyter lab --ServerApp.root_dir=. $(ROOT_FLAG) $(LAB_ARGS) notebooks/en/00-setup.ipynb

# The browser tests (tests/browser) run the notebooks listed in tests/browser/runs.txt in
# JupyterLab and Chromium; where Chromium is found, nbval leaves those out (no notebook runs
# twice). Without Chromium they are skipped, and said so; with CI=true they fail instead.
# The English notebooks run in full; the five translations run as smoke runs (SMOKE = True:
# tiny sizes, every cell and t() string but the checks tagged smoke-skip; tests/smoke_run.py).
# COURSE_SMOKE=0 make test runs them in full. --no-loadscope-reorder keeps tests/conftest.py's
# order: the longest files first.
CHROMIUM := $(or $(CHROMIUM_PATH),$(firstword $(wildcard /usr/bin/chromium /usr/bin/chromium-browser /usr/bin/google-chrome)))
BROWSER_NOTEBOOKS := $(shell sed -n 's|^\([0-9][0-9]-[a-z-]*\) \([a-z][a-z]\)$$|notebooks/\2/\1.ipynb|p' tests/browser/runs.txt)
NBVAL_NOTEBOOKS := $(if $(CHROMIUM),$(filter-out $(BROWSER_NOTEBOOKS),$(NOTEBOOKS)),$(NOTEBOOKS))

test: $(STAMP)
	$(VENV)/bin/ruff check utils course_tools tests benchmarks
	@$(if $(CHROMIUM),true,echo "NOTE: no Chromium found: the browser tests (tests/browser) are SKIPPED. Install chromium and fonts-noto-cjk (apt.txt) to run them.")
	$(TEST_ENV) $(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder --nbval-lax --nbval-cell-timeout=120 \
		--durations=25 tests $(NBVAL_NOTEBOOKS) $(PYTEST_ARGS)

browser: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=14 tests/browser $(PYTEST_ARGS)

unit: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder --ignore=tests/browser tests $(PYTEST_ARGS)

notebooks: $(STAMP)
	$(PY) -m course_tools build

exercises: $(STAMP)
	$(PY) -m course_tools exercises

# Every benchmark, one report: benchmarks/results/<date>-<host>.json and one table.
# BENCH_QUICK=1: the < 2 minute smoke test of the benchmark code (its numbers mean nothing).
bench: $(STAMP)
	$(PY) benchmarks/report.py $(if $(BENCH_QUICK),--quick,)

doctor: $(STAMP)
	$(PY) -m utils doctor

lint: $(STAMP)
	$(VENV)/bin/ruff check utils course_tools tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
