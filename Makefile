# Everyday commands. `make help` lists them. STACK is local, prod or staging.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
STACK ?= local
ENVIRONMENT ?= $(if $(filter local,$(STACK)),prod,$(STACK))
DIAGRAM ?= docs/host.svg
# The Pulumi CLI `make pulumi-cli` installs into the project: first on PATH, then the venv's.
PULUMI_CLI_DIR ?= .pulumi-cli
export PULUMI_CONFIG_PASSPHRASE ?=
export PATH := $(abspath $(PULUMI_CLI_DIR))/bin:$(abspath $(VENV))/bin:$(PATH)
# The local stack's state is the project's (.pulumi-local/, Pulumi's file backend), never
# your `pulumi login`: prod and staging use the backend you are logged in to.
ifeq ($(STACK),local)
export PULUMI_BACKEND_URL := file://$(CURDIR)/.pulumi-local
PREPARE_LOCAL = bash scripts/local.sh prepare
endif
# Before any target that runs pulumi: a CLI, or the command that installs one.
CHECK_CLI = @python3 -m scripts.pulumi_cli check --root $(PULUMI_CLI_DIR) >/dev/null
# Prerequisites are made in the order listed (`make local` checks before it builds).
.NOTPARALLEL:

.PHONY: help pulumi-cli venv doctor images local init preview up release rollback pg-upgrade \
	backup-now restore-drill pitr-status pitr-base pitr-drill restore logs exec restart releases status alerts-test ssh diagram test unit \
	lint destroy-local

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

pulumi-cli:  ## the Pulumi CLI of requirements.txt's SDK, into .pulumi-cli/ if none runs (SHA-256 checked)
	python3 -m scripts.pulumi_cli ensure --root $(PULUMI_CLI_DIR)

venv: $(VENV)/.installed  ## set up: the Python virtualenv the program and the tests run in
$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "$(PYTHON) is \
	  $$($(PYTHON) -V 2>&1); the program needs Python 3.11 or later: make PYTHON=python3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

images:  ## build the reference app and dashboard images for the local stack
	docker build -t aiia-reference-app:local-1 app
	docker build -t aiia-dashboard:local dashboard

doctor: venv  ## check this machine for STACK first: Pulumi CLI, Docker, Python, openssl, ports, subnet, OpenSSH
	@python3 -m scripts.doctor --stack $(STACK)

local: pulumi-cli venv doctor images  ## set up and run the whole stack on this machine (pulumi up -s local)
	bash scripts/local.sh up

# init's STACK is prod unless given: `make init` alone sets up prod (and staging). Pulumi's
# passphrase is not the Makefile's empty one (that is the local stack's): a prod stack on a
# self-managed backend must not get an empty passphrase unasked.
INIT_STACK = $(if $(filter command line environment,$(origin STACK)),$(STACK),prod)
INIT_ENV = $(if $(filter file,$(origin PULUMI_CONFIG_PASSPHRASE)),env -u PULUMI_CONFIG_PASSPHRASE)
init: venv  ## first prod (and staging): stacks, secrets, host key, your keys, domains (ARGS="--org …" to ask nothing)
	$(CHECK_CLI)
	$(INIT_ENV) python3 -m scripts.init --stack $(INIT_STACK) $(ARGS)

preview: venv  ## pulumi preview --diff of STACK (default local)
	$(CHECK_CLI)
	$(PREPARE_LOCAL)
	pulumi preview -s $(STACK) --diff

up: venv  ## pulumi up of STACK
	$(CHECK_CLI)
	$(PREPARE_LOCAL)
	pulumi up -s $(STACK)

release: venv  ## commit RELEASE as ENVIRONMENT's release in STACK's file, then pulumi up
	@test -n "$(RELEASE)" || { echo "usage: make release STACK=prod RELEASE=<image tag> [ENVIRONMENT=prod]" >&2; exit 2; }
	$(CHECK_CLI)
	python3 -m scripts.release set --stack $(STACK) --environment $(ENVIRONMENT) --release '$(RELEASE)' --up

maintenance: venv  ## ON=1: ENVIRONMENT of STACK answers 503 + Retry-After (the maintenance page); ON=0: serves again; commits the stack file, then pulumi up
	@case "$(ON)" in 1|0) ;; *) echo "usage: make maintenance STACK=prod [ENVIRONMENT=prod] ON=1|0" >&2; exit 2;; esac
	$(CHECK_CLI)
	python3 -m scripts.maintenance $(if $(filter 1,$(ON)),on,off) --stack $(STACK) --environment $(ENVIRONMENT) --up

rollback: venv  ## revert STACK's newest release commit (ENVIRONMENT) and pulumi up
	$(CHECK_CLI)
	python3 -m scripts.rollback --stack $(STACK) --environment $(ENVIRONMENT)

pg-upgrade: venv  ## move STACK's PostgreSQL to TO's major (an image) by dump and restore: rows and passwords checked, writes paused for the copy, the old cluster kept; commits the stack file, then pulumi up
	@test -n "$(TO)" || { echo "usage: make pg-upgrade STACK=prod TO=postgres:17.12-trixie" >&2; exit 2; }
	$(CHECK_CLI)
	python3 -m scripts.pg_upgrade --stack $(STACK) --to '$(TO)'

backup-now:  ## a backup of STACK's host now, verified (its bin/backup.sh run; docs/runbooks.md)
	bash scripts/ops.sh job $(STACK) bin/backup.sh run

restore-drill:  ## the restore drill of STACK's newest backup now (bin/backup.sh drill)
	bash scripts/ops.sh job $(STACK) bin/backup.sh drill

pitr-status:  ## STACK's point-in-time recovery: the archive, the window, the base backups, any gap (bin/pitr.sh status)
	bash scripts/ops.sh job $(STACK) bin/pitr.sh status

pitr-base:  ## a PITR base backup of STACK's cluster now (a new chain after a gap; bin/pitr.sh base)
	bash scripts/ops.sh job $(STACK) bin/pitr.sh base

pitr-drill:  ## the PITR drill now: a random second of the window restored in a scratch server, checked against the marker
	bash scripts/ops.sh job $(STACK) bin/pitr.sh drill

restore:  ## ENVIRONMENT's database as it was at TIME ('2026-12-06 10:42:13+00'), swapped in behind its maintenance page; DRY_RUN=1 first (docs/pitr.md)
	@test -n "$(TIME)" || { echo "usage: make restore STACK=prod ENVIRONMENT=prod TIME='2026-12-06 10:42:13+00' [DRY_RUN=1]" >&2; exit 2; }
	bash scripts/ops.sh job $(STACK) bin/pitr.sh restore $(ENVIRONMENT) '$(TIME)' $(if $(DRY_RUN),--dry-run)

logs:  ## the last lines of SERVICE in STACK (nginx, postgres, pgbouncer, redis, dashboard, app-prod, …); FOLLOW=1, SINCE=10m
	@test -n "$(SERVICE)" || { echo "usage: make logs SERVICE=<nginx|postgres|pgbouncer|redis|dashboard|app-prod|app-staging> [STACK=$(STACK)] [FOLLOW=1] [SINCE=10m]" >&2; exit 2; }
	bash scripts/ops.sh logs $(STACK) $(SERVICE) $(if $(FOLLOW),--follow) $(if $(SINCE),--since $(SINCE))

exec:  ## CMD in a container like ENVIRONMENT's serving release (image, variables, secrets, network, user)
	@$(if $(CMD),true,{ echo "usage: make exec [STACK=$(STACK)] [ENVIRONMENT=$(ENVIRONMENT)] CMD=\"python3 manage.py createsuperuser\"" >&2; exit 2; })
	bash scripts/ops.sh exec $(STACK) $(ENVIRONMENT) $(CMD)

# restart's and releases' ENVIRONMENT is the one given (command line or environment), not
# the default: a bare `make restart` must not stop an app.
GIVEN_ENVIRONMENT = $(if $(filter-out file,$(origin ENVIRONMENT)),$(ENVIRONMENT))
restart:  ## restart SERVICE (nginx, postgres, …) or ENVIRONMENT's serving release, waiting until healthy (a short outage)
	@test -n "$(SERVICE)$(GIVEN_ENVIRONMENT)" || { echo "usage: make restart SERVICE=<nginx|postgres|pgbouncer|redis|dashboard> | ENVIRONMENT=<prod|staging> [STACK=$(STACK)]" >&2; exit 2; }
	bash scripts/ops.sh restart $(STACK) $(or $(SERVICE),app-$(GIVEN_ENVIRONMENT))

releases:  ## the release history of STACK's host (releases.jsonl); ENVIRONMENT's alone if given
	bash scripts/ops.sh releases $(STACK) $(GIVEN_ENVIRONMENT)

status:  ## the dashboard's JSON (GET /api/status) of STACK's host (OPERATOR=you if it has operators)
	OPERATOR="$(OPERATOR)" bash scripts/ops.sh status $(STACK)

alerts-test:  ## a test message through every alert channel of STACK's host now (platform.alerts)
	bash scripts/ops.sh alerts-test $(STACK)

ssh:  ## a shell on STACK's host (host.ssh of the stack file)
	bash scripts/ops.sh ssh $(STACK)

diagram:  ## render docs/host.dot (the host diagram) to DIAGRAM (docs/host.svg)
	dot -Tsvg docs/host.dot -o $(DIAGRAM)

destroy-local:  ## remove the local stack; its database and certificate volumes stay unless VOLUMES=1
	$(CHECK_CLI)
	bash scripts/local.sh destroy $(if $(VOLUMES),--volumes)

test:  ## everything CI runs: lint, unit, rendered, e2e (needs root for Docker)
	bash tests/run.sh

unit: venv  ## the fast tests only (mocks, settings, the delivery scripts)
	pytest -q -p no:cacheprovider tests/unit $(PYTEST_ARGS)

lint: venv  ## ruff
	ruff check .
