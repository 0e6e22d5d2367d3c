# Alyx developer commands. Each one creates .venv and installs Alyx into it on first use,
# and again only when pyproject.toml changes. `make run` installs what running needs;
# `make test` and `make lint` add the test and lint tools.
#
#   make run     scaffold demo/ from the blog template (once), migrate it, then run it
#   make test    the test suite; extra pytest arguments: make test PYTEST_ARGS="-k init -x"
#                (first installs the system packages, Node tools and Docker engine it uses)
#   make lint    ruff, mypy --strict and the import contracts

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
ALYX := $(BIN)/alyx
# Touched after each install; pip runs again only when pyproject.toml is newer.
INSTALLED := $(VENV)/.alyx-installed
INSTALLED_DEV := $(VENV)/.alyx-installed-dev

DEMO := demo
DEMO_TEMPLATE := blog
# What `make run` ends with, inside demo/: the development server at http://127.0.0.1:8090.
RUN_CMD ?= $(ALYX) dev
PYTEST_ARGS ?=

.PHONY: help run test lint

help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --disable-pip-version-check -q -e .
	touch $@

$(INSTALLED_DEV): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(INSTALLED) $@

# Only made when missing: an existing demo/ is the developer's to change.
$(DEMO): | $(INSTALLED)
	$(ALYX) init $(DEMO) -t $(DEMO_TEMPLATE)

run: $(INSTALLED) | $(DEMO)
	cd $(DEMO) && $(ALYX) migrate apply
	@echo "alyx is installed in $(BIN): add it to PATH (export PATH=\"$(BIN):\$$PATH\") to use the alyx command in another shell"
	cd $(DEMO) && $(RUN_CMD)

test: $(INSTALLED_DEV)
	bash tests/env/run.sh $(BIN)/pytest $(PYTEST_ARGS)

# Every check runs, even after one fails, so that one pass shows all problems.
lint: $(INSTALLED_DEV)
	@status=0; \
	echo "ruff check ."; $(BIN)/ruff check . || status=1; \
	echo "mypy --strict alyx_server alyx_cli bench"; $(BIN)/mypy --strict alyx_server alyx_cli bench || status=1; \
	echo "lint-imports"; $(BIN)/lint-imports || status=1; \
	exit $$status
