#!/usr/bin/env bash
# The system packages the e2e needs, installed when missing, so that `make test` on a fresh
# Debian machine needs nothing else (the README's two commands are all the set-up):
#   chromium     the browser playwright drives (skipped when BONSAI_E2E_CHROMIUM names another)
#   libkrb5-dev  code-server's native modules build against it (only until code-server is cached)
# As root it runs apt-get; otherwise `sudo -n` when sudo allows it without a password; otherwise
# it prints one line with the exact command to run and exits 1. Quick when nothing is missing.
set -euo pipefail
CACHE="${BONSAI_E2E_CACHE:-$HOME/.cache/bonsai-e2e}"

need=()
if [ -z "${BONSAI_E2E_CHROMIUM:-}" ] && ! dpkg -s chromium >/dev/null 2>&1; then
  need+=(chromium)
fi
if [ ! -f "$CACHE/.stamp-code-server" ] && ! dpkg -s libkrb5-dev >/dev/null 2>&1; then
  need+=(libkrb5-dev)
fi
[ ${#need[@]} -eq 0 ] && exit 0

command="apt-get update && apt-get install -y ${need[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "e2e setup: needs the Debian packages ${need[*]} (no apt-get here: install their equivalents; BONSAI_E2E_CHROMIUM=/path/to/chromium picks another browser)" >&2
  exit 1
fi
# `env` inside sudo: sudo resets the environment, and apt-get must not stop to ask anything.
if [ "$(id -u)" = 0 ]; then
  run=(env DEBIAN_FRONTEND=noninteractive)
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
  run=(sudo -n env DEBIAN_FRONTEND=noninteractive)
else
  echo "e2e setup: needs the Debian packages ${need[*]}; run: sudo sh -c '$command'" >&2
  exit 1
fi
echo "e2e setup: installing ${need[*]} (apt-get)" >&2
"${run[@]}" apt-get update -qq
"${run[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
