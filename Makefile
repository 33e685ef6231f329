# Two commands for everyone: `make lab` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
LAB_ARGS ?=
PYTEST_ARGS ?=
# Every built notebook in every language (student versions of exercises are tested by tests/).
NOTEBOOKS = $(wildcard notebooks/*/[0-9][0-9]-*.ipynb)
# Jupyter's runtime files (kernel connection files) stay inside .venv too.
JUPYTER_ENV := JUPYTER_RUNTIME_DIR=$(CURDIR)/$(VENV)/share/jupyter/runtime
# Tests never touch the network.
TEST_ENV := $(JUPYTER_ENV) OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg COURSE_TESTING=1 PYTHONHASHSEED=0

.PHONY: lab test unit notebooks check-notebooks exercises bench doctor lint clean install

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -c constraints.txt -e ".[test,lab]"
	$(PIP) install --quiet --no-deps -c constraints.txt taming-transformers-rom1504
	touch $(STAMP)

install: $(STAMP)

# Jupyter refuses to run as root without --allow-root (containers, Binder-like machines).
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(STAMP)
	$(JUPYTER_ENV) $(VENV)/bin/jupyter lab --ServerApp.root_dir=. $(ROOT_FLAG) $(LAB_ARGS) notebooks/en/00-setup.ipynb

test: $(STAMP)
	$(VENV)/bin/ruff check utils tests benchmarks
	$(TEST_ENV) $(PY) -m pytest -n 2 --dist loadfile --nbval-lax --nbval-cell-timeout=120 \
		--durations=25 tests $(NOTEBOOKS) $(PYTEST_ARGS)

unit: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest -n 2 --dist loadfile tests $(PYTEST_ARGS)

notebooks: $(STAMP)
	$(PY) -m utils.i18n build

exercises: $(STAMP)
	$(PY) -m utils.exercises build

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

doctor: $(STAMP)
	$(PY) -m utils doctor

lint: $(STAMP)
	$(VENV)/bin/ruff check utils tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
