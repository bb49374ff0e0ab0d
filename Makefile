# acpidiag — see README.md.
GO        ?= go
FUZZTIME  ?= 20s
PKGS      := ./...

.PHONY: all test e2e bench fuzz lint deps guest demo build

all: build test

build:
	$(GO) build $(PKGS)

## test: unit and integration tests (iasl, acpiexec and QEMU are used when present; required under CI=true)
test:
	$(GO) vet $(PKGS)
	$(GO) test -count=1 $(PKGS)

## e2e: end-to-end tests with a real Linux guest under QEMU (TCG); -p 1: one
## package's VMs at a time, so that a test that must run alone (qemuhook's
## TestE2EUserspaceHang: no false stale with every vCPU busy) is not starved
## by another package's VMs on a 2-core machine
e2e: guest
	$(GO) test -p 1 -count=1 -tags e2e -timeout 20m -v -run 'E2E' ./qemuhook/... ./internal/testguest/... ./cmd/... ./monitor/... ./collector/... ./metrics/...

## bench: every Go benchmark
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

## fuzz: every fuzz target for FUZZTIME each
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg; \
	  done; \
	done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

## deps: install QEMU, acpica-tools and OVMF from Debian packages (needs root)
deps:
	bash scripts/deps.sh

## guest: fetch and cache the Debian guest kernel + pvpanic modules
guest:
	bash scripts/fetch-kernel.sh

## demo: boot the bundled test guest, show it alive, make it panic, show the decoded panic
demo: deps guest
	$(GO) run ./cmd/diagvm demo
