# Everyday commands. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
STACK ?= local
export PULUMI_CONFIG_PASSPHRASE ?=

.PHONY: help local venv images test unit lint preview up destroy-local backup-now

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

venv: $(VENV)/.installed  ## the Python virtualenv the program runs in
$(VENV)/.installed: requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

images:  ## build the reference app and dashboard images for the local stack
	docker build -t aiia-reference-app:local-1 app
	docker build -t aiia-dashboard:local dashboard

local: venv images  ## set up and run the whole stack on this machine (pulumi up -s local)
	bash scripts/local-up.sh

preview: venv  ## pulumi preview of STACK (default local)
	pulumi preview -s $(STACK) --diff

up: venv  ## pulumi up of STACK
	pulumi up -s $(STACK)

# Where the platform's host keeps its files (host.root_dir of the stack file).
ROOT ?= $(shell awk '$$1 == "root_dir:" { print $$2; exit }' Pulumi.$(STACK).yaml)
backup-now:  ## a backup now on STACK's host (HOST=user@vps for an SSH host): docs/runbooks.md
	@if [ -n "$(HOST)" ]; then ssh $(HOST) sudo $(ROOT)/bin/backup.sh run; \
	else sudo $(ROOT)/bin/backup.sh run; fi

destroy-local:  ## remove the local stack's containers (protected volumes stay)
	pulumi destroy -s local --yes

test:  ## everything CI runs: lint, unit, rendered, e2e (needs root for Docker)
	bash tests/run.sh

unit: venv  ## the fast tests only (mocks and settings)
	$(VENV)/bin/pytest -q tests/unit

lint: venv  ## ruff
	$(VENV)/bin/ruff check .
