# tokenfab — the two commands a newcomer needs are `make run` and `make test`.
# Everything else is a convenience around cargo and scripts/.

PROMPT ?= Once upon a time
CARGO  ?= cargo

.PHONY: run test models build bench lint header clean-models

## Generate from the default model (Gemma 3 270M Q4_K_M), fetching it first if needed.
run: build
	scripts/fetch-models.sh gemma
	./target/release/tokenfab run "$(PROMPT)"

## Run the whole test suite (release mode), fetching the three real models first if needed,
## installing a software Vulkan driver (lavapipe) for the wgpu tests if there is no driver, and
## the official openai Python client (into target/openai-venv) for the server tests, and
## valgrind for the C ABI's leak check.
test:
	scripts/fetch-models.sh all
	scripts/ensure-vulkan.sh
	scripts/ensure-valgrind.sh
	scripts/ensure-openai-client.sh >/dev/null
	XDG_RUNTIME_DIR=$${XDG_RUNTIME_DIR:-/tmp} $(CARGO) test --release

## Download and assemble the three real models into models/ (idempotent).
models:
	scripts/fetch-models.sh all

build:
	$(CARGO) build --release

## Speed on the default model vs llama.cpp's reference numbers (see README "Speed").
bench: build
	scripts/fetch-models.sh gemma
	$(CARGO) bench --bench core

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --release -- -D warnings

## Regenerate include/tokenfab.h from src/capi/ with cbindgen (a test fails when it is stale).
header:
	TOKENFAB_BLESS=1 $(CARGO) test --release --test capi_header

clean-models:
	rm -f models/*.gguf
