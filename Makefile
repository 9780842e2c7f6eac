# tlsfront: the two commands of the quick start are `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed

.PHONY: run test check bench install sysdeps clean

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found; set PYTHON=/path/to/python3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml analyzer/tlslog/_units.c | $(PY)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test,dask]'
	@touch $(STAMP)

install: $(STAMP)

## make run: the demo (throwaway certificate, demo backend, conf/demo.toml)
run: $(STAMP)
	$(VENV)/bin/tlsfront demo -c conf/demo.toml

## make test: system tools the tests use (nginx, haproxy, apache2, prometheus, ...), then every test
sysdeps:
	@bash tests/install-sysdeps.sh

test: sysdeps $(STAMP)
	$(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

## make check: `tlsfront check` on the demo configuration (its throwaway certificate made first)
check: $(STAMP)
	@$(PY) -c 'from tlsfront.certgen import ensure_demo_certificate as e; e(".state/demo")'
	@mkdir -p .state/demo/logs
	$(VENV)/bin/tlsfront check -c conf/demo.toml

## make bench: tlsfront against nginx and HAProxy, same machine, same run (docs/benchmarks.md)
bench: sysdeps $(STAMP)
	@bash bench/install-tools.sh
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .state build *.egg-info
