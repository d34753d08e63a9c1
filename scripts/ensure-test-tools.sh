#!/usr/bin/env bash
# Installs what the test suite needs, only when missing. Safe to run repeatedly.
#   tansu    Kafka-protocol broker the tests start; built with sqlite storage so the chaos
#            scenarios can restart it without losing the log (cargo install, ~20 min once)
#   python   segment-analytics-python and rudder-sdk-python, the real server libraries used end to end
#   nextest  cargo-nextest, the test runner
#   moto     moto_server, a local S3-compatible server (archive tests)
#   chart    helm-python-sdk, kubernetes-validate, checkov (the Helm chart tests)
#   deny     cargo-deny, the supply-chain check (licences, bans, sources; ~4 min once)
#   oidc     node and npm oidc-provider, the OpenID Connect provider the SSO tests sign in with
#   stunnel  Debian's stunnel4: the TLS terminator in front of tansu (Kafka over TLS tests)
#   browser  Debian's chromium and tests/browser's npm packages (analytics.js, esbuild,
#            playwright-core; pinned by its package-lock.json): the real-browser tests
set -euo pipefail
what="${1:-all}"

need_tansu() {
  local bin="${TANSU_BIN:-$HOME/.cargo/bin/tansu}"
  if [ -x "$bin" ] || command -v tansu >/dev/null 2>&1; then return; fi
  echo "installing tansu 0.6.0 (Kafka-compatible broker for tests; about 20 minutes, once)..." >&2
  # Its own target dir: tansu's dependency versions must not disturb the project's build.
  CARGO_TARGET_DIR="$HOME/.cache/switchyard/tansu-build" \
    cargo install tansu --locked --version 0.6.0 --features dynostore,libsql
}

need_python() {
  if python3 -c 'import segment.analytics, rudderstack.analytics' 2>/dev/null; then return; fi
  echo "installing segment-analytics-python and rudder-sdk-python..." >&2
  python3 -m pip install --quiet segment-analytics-python rudder-sdk-python
}

need_moto() {
  if command -v moto_server >/dev/null 2>&1 && python3 -c 'import flask, flask_cors' 2>/dev/null; then return; fi
  echo "installing moto (local S3-compatible server for the archive tests)..." >&2
  python3 -m pip install --quiet "moto[s3]" flask flask-cors
}

need_chart_tools() {
  if python3 -c 'import helm_python, yaml' 2>/dev/null && command -v kubernetes-validate >/dev/null && command -v checkov >/dev/null; then
    return
  fi
  echo "installing the chart test tools (helm-python-sdk, kubernetes-validate, checkov)..." >&2
  python3 -m pip install --quiet helm-python-sdk kubernetes-validate checkov pyyaml
}

need_nextest() {
  if cargo nextest --version >/dev/null 2>&1; then return; fi
  echo "installing cargo-nextest..." >&2
  cargo install cargo-nextest --locked
}

need_deny() {
  if cargo deny --version >/dev/null 2>&1; then return; fi
  echo "installing cargo-deny (supply-chain checks; about 4 minutes, once)..." >&2
  CARGO_TARGET_DIR="$HOME/.cache/switchyard/deny-build" cargo install cargo-deny --locked --version 0.20.2
}

need_oidc() {
  local dir="${SWITCHYARD_OIDC_DIR:-$HOME/.cache/switchyard/oidc-provider}"
  if [ -d "$dir/node_modules/oidc-provider" ] && command -v node >/dev/null 2>&1; then return; fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "installing nodejs and npm (the SSO tests run an OpenID Connect provider)..." >&2
    apt-get install -y --no-install-recommends nodejs npm >/dev/null
  fi
  echo "installing oidc-provider (OpenID Connect provider for the SSO tests)..." >&2
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-audit --no-fund --silent oidc-provider@9
}

need_stunnel() {
  if [ -x /usr/bin/stunnel4 ] || command -v stunnel >/dev/null 2>&1; then return; fi
  echo "installing stunnel4 (TLS in front of the test broker)..." >&2
  apt-get install -y --no-install-recommends stunnel4 >/dev/null
}

need_browser() {
  local dir
  dir="$(cd "$(dirname "$0")/../tests/browser" && pwd)"
  if ! command -v chromium >/dev/null 2>&1; then
    echo "installing chromium (the real-browser tests; about a minute)..." >&2
    apt-get install -y --no-install-recommends chromium >/dev/null
  fi
  if ! command -v npm >/dev/null 2>&1; then
    apt-get install -y --no-install-recommends nodejs npm >/dev/null
  fi
  # Reinstalled whenever the lock file is newer than what is installed.
  if [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    echo "installing the browser tests' npm packages..." >&2
    npm ci --prefix "$dir" --no-audit --no-fund --silent
  fi
}

case "$what" in
  tansu) need_tansu ;;
  all) need_nextest; need_python; need_moto; need_chart_tools; need_oidc; need_stunnel; need_browser; need_deny; need_tansu ;;
  *) echo "usage: $0 [tansu|all]" >&2; exit 2 ;;
esac
