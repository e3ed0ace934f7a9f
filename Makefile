# aivault — build, test and demo. See README.md.
SHELL := /bin/bash
GO ?= go
PREFIX ?= /usr/local
VERSION ?= 0.1.0-dev
# The product is pure Go (CGO_ENABLED=0), hence static: no libc, no cgo
# start-up in every worker process. The tests use cgo (-race, and the
# seccomp filter generator in sandbox/seccompgen, which needs libseccomp-dev).
STATIC_FLAGS := -trimpath -tags 'osusergo netgo$(EXTRA_TAGS)' \
	-ldflags '-s -w -X github.com/aivault/aivault/applets.Version=$(VERSION)'
export CGO_ENABLED := 1
# Fuzz budgets are execution counts, not durations: with a duration, Go 1.26's
# fuzz coordinator can report a spurious "context deadline exceeded" failure at
# the deadline on a loaded machine (go.dev/issue/75804, fixed in Go 1.27).
FUZZTIME ?= 50000x

.PHONY: all deps build dev test unit e2e fuzz-short fuzz demo install bench soak clean vet

all: build

deps:
	@if [ -f /usr/lib/x86_64-linux-gnu/libseccomp.a ] || [ -f /usr/lib/libseccomp.a ] || ls /usr/lib/*/libseccomp.a >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then echo "make deps: installing libseccomp-dev"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libseccomp-dev; \
	else echo "make deps: libseccomp.a is missing; run 'sudo apt-get install libseccomp-dev' (or 'sudo make deps')" >&2; exit 1; fi
	@command -v file >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq file; } || true

build: deps
	CGO_ENABLED=0 $(GO) build $(STATIC_FLAGS) -o bin/aivault .
	@file bin/aivault | grep -q 'statically linked' || { echo "bin/aivault is not statically linked" >&2; file bin/aivault; exit 1; }
	ln -sf aivault bin/aivaultd
	ln -sf aivault bin/setup
	@echo "built bin/aivault (release) with bin/aivaultd and bin/setup"

dev: deps
	CGO_ENABLED=0 $(GO) build $(subst osusergo netgo,osusergo netgo devhooks,$(STATIC_FLAGS)) -o bin/aivault-dev .
	@file bin/aivault-dev | grep -q 'statically linked' || { echo "bin/aivault-dev is not statically linked" >&2; exit 1; }
	@echo "built bin/aivault-dev (devhooks test build)"

vet:
	$(GO) vet ./...
	$(GO) vet -tags devhooks ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); [ -z "$$out" ] || { echo "gofmt needed: $$out" >&2; exit 1; }

unit: deps
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v '/test$$')

e2e: dev build
	$(GO) test -count=1 -timeout 20m ./test/

# Each fuzz target runs briefly; `make fuzz` (or FUZZTIME=20000000x) runs longer.
fuzz-short: deps
	@set -e; for pkg in $$($(GO) list ./...); do \
		dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
		for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
			echo "fuzz $$pkg $$t ($(FUZZTIME))"; \
			$(GO) test -run='^$$' -fuzz="^$$t$$" -fuzztime=$(FUZZTIME) $$pkg; \
		done; \
	done

fuzz:
	$(MAKE) fuzz-short FUZZTIME=5000000x

test: deps vet unit e2e fuzz-short
	@echo "make test: all suites passed"

demo: dev
	@bash test/demo.sh

install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 bin/aivault $(DESTDIR)$(PREFIX)/bin/aivault
	ln -sf aivault $(DESTDIR)$(PREFIX)/bin/aivaultd
	ln -sf aivault $(DESTDIR)$(PREFIX)/bin/setup

# Side by side: direct HTTPS, invoke through the daemon, the CLI, nginx (see
# docs/benchmarks/README.md); prints RESULT lines, writes docs/benchmarks/.
bench: dev
	@bash test/bench/bench.sh

# 20,000 invocations at concurrency 64 with workers killed on the way; fails
# on errors, descriptor/RSS growth or workers left behind. (make test runs
# 2,000: test/testdata/load_daemon.txtar.)
soak: dev
	$(GO) run ./test/bench -bin bin/aivault-dev -soak 20000 -soak-c 64 -kills 50

clean:
	rm -rf bin
