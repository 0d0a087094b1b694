# Developer entry points. `make test` is what CI runs (see .ci/run).

GO       ?= go
NPM      ?= npm
FUZZTIME ?= 20s

.PHONY: all deps test bench demo fuzz

all: test

# Install the pinned Azurite (package-lock.json) into node_modules/ when it is
# missing or the lock file has changed since the last install, and fetch the
# Go modules.
deps:
	@if [ ! -x node_modules/.bin/azurite-blob ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then \
		echo "$(NPM) ci"; $(NPM) ci; \
	fi
	$(GO) mod download

test: deps
	$(GO) vet ./...
	$(GO) test -race -timeout 20m ./...

bench: deps
	$(GO) run ./cmd/ehcheckpoints bench

demo:
	$(GO) run ./cmd/ehcheckpoints demo

# Run every Fuzz target in the module for FUZZTIME each (make fuzz FUZZTIME=1m).
# `go test -list` prints a package's targets before its "ok <package>" line.
fuzz:
	@set -e; \
	list=$$($(GO) test -list '^Fuzz' ./...); \
	targets=$$(printf '%s\n' "$$list" | awk '/^Fuzz/ { f[n++] = $$1 } /^ok / { for (i = 0; i < n; i++) print $$2, f[i]; n = 0 }'); \
	if [ -z "$$targets" ]; then echo "no Fuzz targets found"; exit 0; fi; \
	printf '%s\n' "$$targets" | while read -r pkg fn; do \
		echo "$(GO) test -run '^$$' -fuzz '^$$fn\$$' -fuzztime $(FUZZTIME) $$pkg"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) "$$pkg"; \
	done
