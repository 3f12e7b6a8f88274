# orpo-hpc — the two set-up commands of the README, and a few conveniences.
#   make demo    install missing packages, build, run the demo job on the embedded tiny model
#   make test    install missing packages, build (release + ASan/UBSan), run the whole test suite
#   make install PREFIX=DIR   build the binary and copy it to DIR/bin/orpo-hpc (default PREFIX: ~/.local)
.PHONY: demo test deps build build-bin build-asan test-release test-asan install clean

PREFIX ?= $(HOME)/.local

deps:
	@scripts/install-deps.sh

build: deps
	cmake --preset release >/dev/null
	cmake --build --preset release

# the binary alone (what the demo needs; the tests are built by `build`)
build-bin: deps
	cmake --preset release >/dev/null
	cmake --build --preset release --target orpo-hpc

build-asan: deps
	cmake --preset asan >/dev/null
	cmake --build --preset asan

# the plot of the demo's curves uses Debian's h5py and matplotlib (/usr/bin/python3)
demo: build-bin
	@scripts/install-deps.sh python3-h5py python3-matplotlib
	scripts/demo.sh build/release/orpo-hpc

# The sanitizer build runs the unit and oracle tests; the release build runs everything.
test-asan: build-asan
	ctest --preset asan -L "unit|oracle"

test-release: build
	ctest --preset release

test: test-asan test-release

install: build-bin
	cmake --install build/release --prefix "$(PREFIX)"
	@echo "installed $(PREFIX)/bin/orpo-hpc (put $(PREFIX)/bin on PATH)"

clean:
	rm -rf build
