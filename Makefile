# archive-hub: `make demo` runs the main job end to end; `make test` installs what it needs and runs
# the whole suite. Everything lands under ./var (ignored by git).
SHELL := /bin/bash
# `python3 -m uv` works wherever pip put uv (user site, pyenv, system), even before PATH knows it.
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
export UV_PYTHON := 3.11

.PHONY: setup demo test bench lint format clean

# uv is installed with pip when missing; `uv sync --frozen` installs exactly what uv.lock says.
# Bytecode is compiled once here (uv does not by default, and with PYTHONDONTWRITEBYTECODE set Python never
# caches it): otherwise every CLI call, Airflow task and worker process recompiles SQLAlchemy, Airflow and
# GX from source, about 0.7 s per process. A stale .pyc is only ever ignored (Python checks the source).
setup:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv \
		|| python3 -m pip install --quiet --user uv
	@$(UV) sync --frozen --quiet --compile-bytecode
	@$(UV) run --frozen python -m compileall -q -j 0 archive_hub archive_sink canonical_model connectors mappings dags bench sso >/dev/null
	@$(UV) run --frozen python -c 'from archive_sink.sm3_batch import report_setup; report_setup()'

demo: setup
	@$(UV) run --frozen archive-hub demo

# The suite starts its own servers (PostgreSQL via scripts/postgres.sh, ClamAV's clamd via scripts/clamav.sh;
# Airflow runs in-process).
test: setup
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen pytest -q

# Each benchmark prints its figures beside the limit measured in the same run; exit 1 marks a missed target.
bench: setup
	@rc=0; $(UV) run --frozen python -m bench.bench_archive || rc=$$?; \
	$(UV) run --frozen python -m bench.bench_bank || rc=$$?; \
	$(UV) run --frozen python -m bench.bench_backup || rc=$$?; exit $$rc

lint: setup
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen ruff format --check .

format: setup
	@$(UV) run --frozen ruff format .
	@$(UV) run --frozen ruff check --fix .

clean:
	@bash scripts/postgres.sh stop >/dev/null 2>&1 || true
	@bash scripts/clamav.sh stop >/dev/null 2>&1 || true
	rm -rf var
