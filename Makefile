# Two entry points (see README): `make chat` and `make test`. Both set themselves up.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
APT_PKGS := espeak-ng sox chromium

.PHONY: setup apt chat lint format test test-quick bench clean

$(STAMP): requirements.lock requirements-nodeps.lock pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

# Debian packages: installed only when missing, so reruns are free.
apt:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] && echo "" || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing; \
	fi

setup: apt $(STAMP)

chat: setup
	$(BIN)/flowomni chat $(if $(AUDIO),$(AUDIO),examples/question_1.wav) -o answer.wav $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT),)

# ruff (pinned in requirements.lock, settings in pyproject.toml) first: a lint error or an
# unformatted file fails the run (`make format` formats the tree)
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest -q

test-quick: lint
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) runs .pytest_cache
