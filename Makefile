# vk-cri — `make help` lists the targets.
#
# One cargo target directory outside the work tree, shared by every checkout and session on a
# machine: gRPC's C++ core takes ~12 minutes to build once per profile and target.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/vk-cri/target
# The test environment: a private containerd + registries (contrib/dev-env/up.sh).
export VKCRI_DEV_BASE ?= /var/tmp/vk-cri-dev
CARGO ?= cargo
MUSL_TARGET := x86_64-unknown-linux-musl
STATIC_BIN := $(CARGO_TARGET_DIR)/$(MUSL_TARGET)/release/virtual-kubelet
ZIG_VENV := $(HOME)/.cache/vk-cri/zig-venv
# The C++ compiler wrapper is copied to a fixed path: its path is part of gRPC core's build
# fingerprint, so a path inside the work tree would rebuild it (~15 min) for every checkout.
ZIG_CXX := $(HOME)/.cache/vk-cri/zig-cxx-musl
# The static musl release build (zig as the C/C++ compiler for gRPC core), shared by `static`
# and `bench`; append cargo arguments (e.g. `--example bench`).
ZIGENV = PATH="$(ZIG_VENV)/bin:$$PATH" \
	CXX_$(subst -,_,$(MUSL_TARGET))="$(ZIG_CXX)" \
	CFLAGS_$(subst -,_,$(MUSL_TARGET))="-D_LARGEFILE64_SOURCE" \
	CXXFLAGS_$(subst -,_,$(MUSL_TARGET))="-D_LARGEFILE64_SOURCE -Wno-missing-template-arg-list-after-template-kw"
ZIGBUILD = $(ZIGENV) cargo-zigbuild zigbuild --locked --release --target $(MUSL_TARGET)
BENCH_BIN := $(CARGO_TARGET_DIR)/$(MUSL_TARGET)/release/examples/bench
BENCH_OUT := $(CARGO_TARGET_DIR)/bench/last.json
# Extra harness arguments, e.g. BENCH_ARGS="--phases scale" for the scale series alone.
BENCH_ARGS ?=
# Cases per parser in make chaos's fuzz run (make test runs 400).
CHAOS_FUZZ_CASES ?= 30000

TEXT_PROF := $(CARGO_TARGET_DIR)/text-layout/virtual-kubelet

.PHONY: help build-deps build test unit env-up env-down lint static check-static run bench chaos text-layout

help: ## list the targets
	@awk 'BEGIN{FS=":.*## "} /^[a-z-]+:.*## /{printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build-deps: ## install what building grpcio needs (cmake, g++, make), if missing
	@missing=""; for p in cmake g++ make pkg-config; do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 $$missing >/dev/null; fi

build: build-deps ## debug build of the daemon
	$(CARGO) build --locked

run: build env-up ## the main job: vk-cri in standalone mode running contrib/examples on the project's containerd
	$(CARGO_TARGET_DIR)/debug/virtual-kubelet --provider cri \
	  --pod-manifest-path contrib/examples \
	  --cri-socket "$(VKCRI_DEV_BASE)/run/containerd.sock" \
	  --address 127.0.0.1 --anonymous-auth=true

env-up: ## start (or reuse) the test environment: containerd, runc, CNI, registries, egress guard
	contrib/dev-env/up.sh "$(VKCRI_DEV_BASE)"

env-down: ## stop the test environment (keeps its images; `contrib/dev-env/down.sh BASE --purge` removes all)
	contrib/dev-env/down.sh "$(VKCRI_DEV_BASE)"

unit: build-deps ## unit tests only (no containerd needed)
	$(CARGO) test --locked --lib

test: build-deps env-up ## the test command: environment up, then every test (unit + integration against real containerd)
	$(CARGO) build --locked --all-targets
	. "$(VKCRI_DEV_BASE)/env.sh" && $(CARGO) test --locked --all-targets

lint: ## cargo fmt --check and clippy with warnings as errors
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

static: build-deps ## fully static x86_64 musl release binary (zig as the C/C++ compiler for gRPC core)
	@rustup target list --installed | grep -qx $(MUSL_TARGET) || rustup target add $(MUSL_TARGET)
	@[ -x "$(ZIG_VENV)/bin/cargo-zigbuild" ] || { python3 -m venv "$(ZIG_VENV)" && \
	  "$(ZIG_VENV)/bin/pip" install -q --disable-pip-version-check ziglang cargo-zigbuild; }
	@cmp -s contrib/static/zig-cxx-musl "$(ZIG_CXX)" || install -D -m 755 contrib/static/zig-cxx-musl "$(ZIG_CXX)"
	$(ZIGBUILD)
	$(MAKE) --no-print-directory check-static

check-static: ## verify the static binary: linkage, size, --version
	@# No recipe reopens its own output (a `tee /dev/stderr` truncates a redirected log).
	@kind=$$(file "$(STATIC_BIN)"); echo "$$kind"; case "$$kind" in *"statically linked"*) ;; *) exit 1;; esac
	@hot=$$(readelf -SW "$(STATIC_BIN)" | sed -n 's/.* \.text\.hot  *PROGBITS  *[0-9a-f]* [0-9a-f]* \([0-9a-f]*\) .*/\1/p'); \
	  echo "text layout: .text.hot $$(( 0x$${hot:-0} / 1000 )) kB"; \
	  [ $$(( 0x$${hot:-0} )) -gt 1000000 ] || { echo "the text layout (contrib/static/hot-text.txt) placed under 1 MB: see docs/PERFORMANCE.md" >&2; exit 1; }
	@ls -l "$(STATIC_BIN)" | awk '{printf "size: %.1f MB\n", $$5/1e6}'
	"$(STATIC_BIN)" --version

bench: static env-up ## measure the static daemon against the CRI floor, at 0-500 pods and 1-50 nodes (JSON + tables + SVG charts; BENCH_ARGS="--phases scale")
	$(ZIGBUILD) --example bench
	. "$(VKCRI_DEV_BASE)/env.sh" && "$(BENCH_BIN)" --daemon "$(STATIC_BIN)" --out "$(BENCH_OUT)" $(BENCH_ARGS)
	@echo "bench report: $(BENCH_OUT)"

chaos: build-deps env-up ## faults (daemon kills, containerd/API server outages, slow CRI, full disks) and a long fuzz run; counts to JSON + table (CHAOS_ARGS="--scenarios churn --kills 5")
	cargo build --locked --bin virtual-kubelet --example chaos
	VKCRI_FUZZ_CASES=$(CHAOS_FUZZ_CASES) cargo test --locked --lib fuzz::
	. "$(VKCRI_DEV_BASE)/env.sh" && "$(CARGO_TARGET_DIR)/debug/examples/chaos" \
	  --daemon "$(CARGO_TARGET_DIR)/debug/virtual-kubelet" --out "$(CARGO_TARGET_DIR)/chaos/last.json" $(CHAOS_ARGS)

text-layout: static env-up ## regenerate contrib/static/hot-text.txt from a profile of the static daemon (root, ~10 min)
	$(ZIGBUILD) --example bench
	$(ZIGENV) cargo-zigbuild rustc --locked --release --target $(MUSL_TARGET) --bin virtual-kubelet -- \
	  -C llvm-args=-align-all-functions=12 -C strip=none
	install -D -m 755 "$(STATIC_BIN)" "$(TEXT_PROF)"
	. "$(VKCRI_DEV_BASE)/env.sh" && python3 contrib/static/text-layout.py \
	  --daemon "$(TEXT_PROF)" --bench "$(BENCH_BIN)" --out contrib/static/hot-text.txt \
	  --pages "$(dir $(TEXT_PROF))pages.json"
	$(MAKE) --no-print-directory static
