#!/usr/bin/env bash
# Installs the e2e tools into a cache folder OUTSIDE the repo, reused across runs:
#   node 24 (npm package node@24) and code-server 4.139.x installed with that node.
# code-server's native modules need Debian's libkrb5-dev and npm install scripts allowed.
# Idempotent: a stamp per tool, so the second run costs a few milliseconds.
set -euo pipefail
CACHE="${BONSAI_E2E_CACHE:-$HOME/.cache/bonsai-e2e}"
NODE_SPEC="node@24"
CS_SPEC="code-server@~4.139.1"
mkdir -p "$CACHE"
start=$(date +%s)

if [ ! -f "$CACHE/.stamp-node24" ]; then
  echo "e2e setup: installing $NODE_SPEC into $CACHE/node24"
  rm -rf "$CACHE/node24"
  mkdir -p "$CACHE/node24"
  npm install --prefix "$CACHE/node24" --no-audit --no-fund --loglevel=error "$NODE_SPEC"
  "$CACHE/node24/node_modules/.bin/node" --version | grep -q '^v24\.' || { echo "node@24 did not give a node 24 binary" >&2; exit 1; }
  touch "$CACHE/.stamp-node24"
fi
NODE_BIN_DIR="$(dirname "$(readlink -f "$CACHE/node24/node_modules/.bin/node")")"
# node@24 ships its headers beside the binary: native modules must build against them (a
# user-level npmrc may point nodedir at the system node's headers, another ABI).
HEADER="$(find "$CACHE/node24" -path '*/include/node/node_version.h' 2>/dev/null | head -n 1)"
NODE_HOME="$(dirname "$(dirname "$(dirname "${HEADER:-/x/x/x/x}")")")"

if [ ! -f "$CACHE/.stamp-code-server" ]; then
  if ! dpkg -s libkrb5-dev >/dev/null 2>&1; then
    echo "e2e setup: code-server's native modules need Debian's libkrb5-dev (apt-get install libkrb5-dev)" >&2
    exit 1
  fi
  echo "e2e setup: installing $CS_SPEC with node $("$NODE_BIN_DIR/node" --version) into $CACHE/code-server"
  rm -rf "$CACHE/code-server"
  mkdir -p "$CACHE/code-server"
  # code-server's postinstall runs npm inside itself: the node 24 binary must be first on PATH.
  test -f "$NODE_HOME/include/node/node_version.h" || { echo "node@24 has no headers in $NODE_HOME/include" >&2; exit 1; }
  PATH="$NODE_BIN_DIR:$PATH" npm_config_nodedir="$NODE_HOME" npm_config_ignore_scripts=false npm install --prefix "$CACHE/code-server" \
    --no-audit --no-fund --loglevel=error --unsafe-perm "$CS_SPEC"
  test -x "$CACHE/code-server/node_modules/.bin/code-server"
  # A native module code-server needs must load in node 24 (catches a build against other headers).
  "$NODE_BIN_DIR/node" -e "require('$CACHE/code-server/node_modules/code-server/lib/vscode/node_modules/@vscode/spdlog')" \
    || { echo "code-server's native modules do not load with node 24" >&2; exit 1; }
  touch "$CACHE/.stamp-code-server"
fi
echo "e2e setup: tools ready in $CACHE ($(( $(date +%s) - start ))s)"
