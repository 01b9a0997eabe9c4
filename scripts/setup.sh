#!/usr/bin/env bash
# Set up everything headrace and its tests need on a fresh Debian machine (idempotent):
# Debian packages (mosquitto-clients for the end-to-end tests, chromium and nodejs/npm for
# the web console and its browser tests), a virtualenv in .venv, the package with its
# test extras, and the console's one npm dependency (uPlot, `npm ci`).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mosquitto_pub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.headrace-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi

# the web console (src/headrace/console): plain ES modules, no build step; npm installs
# uPlot into its node_modules, which the hub serves under /console/vendor/
console=src/headrace/console
if [ ! -f "$console/node_modules/.package-lock.json" ] || [ "$console/package-lock.json" -nt "$console/node_modules/.package-lock.json" ]; then
  (cd "$console" && npm ci --no-audit --no-fund --loglevel=error)
fi
