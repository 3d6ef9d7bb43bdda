# Herald: `make run` starts everything, `make test` runs every test. Nothing needs starting by hand:
# without DATABASE_URL a private PostgreSQL cluster is started under .data/pg, listening only on a
# unix socket in .data (no TCP port, so nothing clashes with another PostgreSQL on this machine).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

DATA     := $(CURDIR)/.data
PGDATA   := $(DATA)/pg
PGPORT   := 5432
PGDB     := herald
BIN      := $(CURDIR)/bin/herald
GOTEST   ?= go test
TESTFLAGS ?= -race -count=1 -timeout 15m

# The connection string: the caller's DATABASE_URL, or the private cluster's (written by `db`).
DB_URL = $${DATABASE_URL:-$$(cat $(DATA)/database_url)}

.PHONY: help build db db-stop migrate run test bench lint clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

build: ## build bin/herald
	@mkdir -p bin
	go build -o $(BIN) ./cmd/herald

db: ## start the private PostgreSQL cluster (skipped when DATABASE_URL is set)
	@if [ -n "$${DATABASE_URL:-}" ]; then echo "using DATABASE_URL from the environment"; exit 0; fi; \
	bindir=""; \
	if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then bindir=$$(dirname "$$(readlink -f "$$(command -v pg_ctl)")"); \
	else bindir=$$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1); fi; \
	if [ -z "$$bindir" ] || [ ! -x "$$bindir/initdb" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "PostgreSQL server binaries not found: installing Debian's postgresql package"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	    bindir=$$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1); \
	  else echo "PostgreSQL server binaries (initdb, pg_ctl) not found: install the postgresql package (e.g. apt-get install postgresql) or set DATABASE_URL" >&2; exit 1; fi; \
	fi; \
	mkdir -p $(DATA); home=$(DATA); as=""; dbuser=$$(id -un); \
	if [ "$$(id -u)" = 0 ]; then \
	  id -u postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /usr/sbin/nologin postgres; \
	  cd /; as="runuser -u postgres --"; dbuser=postgres; chown postgres: $(DATA); \
	  if ! runuser -u postgres -- test -w $(DATA); then \
	    home=/tmp/herald-pg-$$(printf %s "$(CURDIR)" | cksum | cut -d' ' -f1); \
	    mkdir -p $$home && chown postgres: $$home && chmod 700 $$home; \
	    ln -sfn $$home/pg $(PGDATA); \
	  fi; \
	fi; \
	echo "$$home" > $(DATA)/pghome; \
	if [ ! -f $$home/pg/PG_VERSION ]; then \
	  $$as "$$bindir/initdb" -D $$home/pg -U $$dbuser --auth=trust --encoding=UTF8 --locale=C.UTF-8 >$(DATA)/initdb.log 2>&1 \
	    || { cat $(DATA)/initdb.log >&2; exit 1; }; \
	fi; \
	if ! $$as "$$bindir/pg_ctl" -D $$home/pg status >/dev/null 2>&1; then \
	  $$as "$$bindir/pg_ctl" -D $$home/pg -l $$home/pg/server.log -w -t 60 start \
	    -o "-c listen_addresses='' -c unix_socket_directories='$$home' -p $(PGPORT) -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 -c shared_buffers=256MB" >/dev/null \
	    || { $$as tail -n 20 $$home/pg/server.log >&2; exit 1; }; \
	fi; \
	url="postgres://$$dbuser@/$(PGDB)?host=$$home&port=$(PGPORT)&sslmode=disable"; \
	admin="postgres://$$dbuser@/postgres?host=$$home&port=$(PGPORT)"; \
	psql "$$admin" -tAc "SELECT 1 FROM pg_database WHERE datname='$(PGDB)'" | grep -q 1 || psql "$$admin" -qc "CREATE DATABASE $(PGDB)"; \
	echo "$$url" > $(DATA)/database_url; \
	echo "PostgreSQL ready: $$url"

db-stop: ## stop the private PostgreSQL cluster
	@[ -f $(DATA)/pghome ] || exit 0; home=$$(cat $(DATA)/pghome); \
	as=""; [ "$$(id -u)" = 0 ] && as="runuser -u postgres --"; \
	bindir=$$(dirname "$$(readlink -f "$$(command -v pg_ctl || ls -d /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -n1)")"); \
	if [ -f $$home/pg/postmaster.pid ]; then $$as "$$bindir/pg_ctl" -D $$home/pg -m fast stop; fi

migrate: build db ## apply Herald's and River's migrations
	DATABASE_URL=$(DB_URL) $(BIN) migrate

run: build db ## migrate, then run API + workers + capture SMTP (herald dev) with a demo workspace
	DATABASE_URL=$(DB_URL) $(BIN) migrate
	DATABASE_URL=$(DB_URL) exec $(BIN) dev

test: db ## run every test against the private PostgreSQL and in-process SMTP servers
	DATABASE_URL=$(DB_URL) $(GOTEST) $(TESTFLAGS) ./...

bench: db ## run the benchmarks and print their figures
	DATABASE_URL=$(DB_URL) go test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 20m ./...

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	go vet ./...

clean: db-stop ## stop the cluster and remove it, .data and bin
	@if [ -f $(DATA)/pghome ] && [ "$$(cat $(DATA)/pghome)" != "$(DATA)" ]; then rm -rf "$$(cat $(DATA)/pghome)"; fi
	rm -rf $(DATA) bin
