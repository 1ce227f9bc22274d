#!/usr/bin/env bash
# wasmagent: set up, build, serve, test and benchmark — everything from the package registries.
#   ./build.sh            set up and build dist/
#   ./build.sh serve      ... then serve dist/ on http://127.0.0.1:8000 (HOST/PORT override)
#   ./build.sh test       ... then run every test (lint, types, unit, Pyodide, end to end)
#   ./build.sh bench      ... then run the benchmarks (--quick for a short run)
# Each set-up step is skipped when its inputs (requirements, lockfile) did not change.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT=$PWD
STAMPS=$ROOT/.build/stamps
mkdir -p "$STAMPS"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

# `changed NAME FILES...` is true when the files' hash differs from the one `record` last kept.
digest() { cat "$@" | sha256sum | cut -d' ' -f1; }
changed() { local name=$1; shift; [[ ! -f $STAMPS/$name || $(cat "$STAMPS/$name") != "$(digest "$@")" ]]; }
record() { local name=$1; shift; digest "$@" > "$STAMPS/$name"; }

as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  say "installing Debian packages: $*"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

check_tools() {
  command -v python3 >/dev/null || die "python3 (3.11+) is required"
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "python3 must be 3.11 or newer"
  command -v node >/dev/null || die "node (20+) is required"
  [[ $(node -p 'process.versions.node.split(".")[0]') -ge 20 ]] || die "node must be 20 or newer"
}

# pyodide-build's lockfile command needs Python >= 3.12; Debian 12 ships 3.11, so look further:
# PATH first, then pyenv's installed versions (its shims exist even where they cannot run).
is_py312() { [[ -x $1 ]] && "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; }
find_python312() {
  local c
  for c in $(command -v python3.14 python3.13 python3.12 python3 2>/dev/null) \
           "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3; do
    is_py312 "$c" && { echo "$c"; return; }
  done
  return 1
}

setup_python() {
  if [[ ! -x .venv/bin/python ]] || changed venv requirements-dev.txt pyproject.toml; then
    say "setting up .venv (pinned Python dependencies)"
    [[ -x .venv/bin/python ]] || python3 -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip==25.2
    .venv/bin/pip install -q -r requirements-dev.txt
    .venv/bin/pip install -q --no-deps --no-build-isolation -e .
    record venv requirements-dev.txt pyproject.toml
  fi
  if [[ ! -x .venv-pyodide/bin/pyodide ]] || changed venv-pyodide requirements-pyodide.txt; then
    local py; py=$(find_python312) || die "Python 3.12+ is needed for pyodide-build's lockfile command (found none on PATH or under pyenv)"
    say "setting up .venv-pyodide with $py (pyodide-build needs Python >= 3.12)"
    rm -rf .venv-pyodide
    "$py" -m venv .venv-pyodide
    .venv-pyodide/bin/pip install -q -r requirements-pyodide.txt
    record venv-pyodide requirements-pyodide.txt
  fi
}

setup_node() {
  if [[ ! -d node_modules ]] || changed npm package-lock.json; then
    say "installing npm packages from package-lock.json"
    # --ignore-scripts: onnxruntime-node (pulled in by the transformers.js benchmark peer) would
    # download native binaries from outside the registries in its postinstall; nothing we use
    # needs an install script (the browser side is plain files, workbox runs rollup as wasm).
    npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
    record npm package-lock.json
  fi
}

setup_chromium() {
  [[ -x /usr/bin/chromium ]] || apt_install chromium
}

# The store tests start throwaway PostgreSQL clusters from Debian's server binaries
# (tests/support/postgres.py); the package's own `main` cluster is never used.
setup_postgres() {
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || apt_install postgresql
}

build() {
  check_tools
  setup_python
  setup_node
  say "building dist/"
  .venv/bin/python wasm_pkg/build.py --pyodide-cli .venv-pyodide/bin/pyodide
}

# tests/unit/test_native_cpu.py runs native MiniLM under an emulated AVX2-only CPU (qemu-user),
# where onnxruntime's int8 kernels saturate: the CPU most machines do not have at hand.
setup_qemu() {
  [[ $(uname -m) != x86_64 ]] || command -v qemu-x86_64 >/dev/null || apt_install qemu-user
}

run_tests() {
  setup_chromium
  setup_postgres
  setup_qemu
  say "ruff"
  .venv/bin/ruff check app tests wasm_pkg models
  say "mypy --strict app/"
  .venv/bin/mypy app
  say "the core in Pyodide (Node)"
  node tests/pyodide/run.mjs
  say "pytest: unit, server (real processes and PostgreSQL on loopback) and end-to-end"
  .venv/bin/pytest -p no:cacheprovider "$@"  # testpaths (pyproject.toml): unit, server, e2e
}

# Benchmark-only peers (sentence-transformers on PyTorch) live in their own venv: their pins
# (numpy, tokenizers, huggingface_hub) differ from .venv's, and tests never need them.
setup_bench() {
  if [[ ! -x .venv-bench/bin/python ]] || changed venv-bench requirements-bench.txt; then
    say "setting up .venv-bench (pinned benchmark peers: sentence-transformers, torch CPU)"
    rm -rf .venv-bench
    python3 -m venv .venv-bench
    .venv-bench/bin/pip install -q -r requirements-bench.txt
    record venv-bench requirements-bench.txt
  fi
}

case ${1:-build} in
  build) build ;;
  serve) build; exec .venv/bin/python -m wasmagent serve --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}" ;;
  test) shift; build; run_tests "$@" ;;
  bench) shift; build; setup_chromium; setup_bench; exec .venv/bin/python tests/bench/run.py "$@" ;;
  *) die "usage: ./build.sh [build|serve|test|bench]" ;;
esac
