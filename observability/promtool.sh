#!/usr/bin/env bash
# Prometheus' own checks of rxsm, with promtool (installed here when missing):
#   observability/promtool.sh install   install promtool if missing, print its path
#   observability/promtool.sh [check]   (1) promtool check config on observability/prometheus/prometheus.yml,
#                                        promtool check rules on any rules file beside it;
#                                        (2) promtool check metrics on each service's /metrics after a renewal
#                                        went through (tests/test_promtool.py, tests/e2e/test_promtool.py:
#                                        the tests start the services in process, on KAFKA_BOOTSTRAP_SERVERS
#                                        or a broker of their own)
# promtool comes from Debian's prometheus package: only its promtool binary is unpacked (no server, no
# service started). PROMTOOL names a promtool to use instead.
set -euo pipefail
cd "$(dirname "$0")/.."

PROMETHEUS_DIR=observability/prometheus

find_promtool() {
  if [ -n "${PROMTOOL:-}" ] && [ -x "$PROMTOOL" ]; then
    echo "$PROMTOOL"
  elif command -v promtool >/dev/null 2>&1; then
    command -v promtool
  else
    return 1
  fi
}

install_promtool() (
  if find_promtool; then exit 0; fi
  if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
    echo "promtool is missing and this is no Debian machine: install Prometheus' promtool and set PROMTOOL" >&2
    exit 1
  fi
  if [ "$(id -u)" = 0 ]; then bin_dir=/usr/local/bin; else bin_dir="$HOME/.local/bin"; fi
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  echo "installing promtool from Debian's prometheus package into $bin_dir" >&2
  if ! (cd "$work" && apt-get download -qq prometheus >/dev/null 2>&1); then
    if [ "$(id -u)" = 0 ]; then apt-get update -qq >/dev/null; fi
    (cd "$work" && apt-get download -qq prometheus >/dev/null)
  fi
  dpkg-deb -x "$work"/prometheus_*.deb "$work/unpacked"
  mkdir -p "$bin_dir"
  install -m 0755 "$work/unpacked/usr/bin/promtool" "$bin_dir/promtool"
  "$bin_dir/promtool" --version 2>&1 | head -1 >&2
  echo "$bin_dir/promtool"
)

check() {
  local promtool
  promtool="$(install_promtool)"
  export PROMTOOL="$promtool"
  "$promtool" check config "$PROMETHEUS_DIR/prometheus.yml"
  shopt -s nullglob
  local rules=("$PROMETHEUS_DIR"/rules/*.yml "$PROMETHEUS_DIR"/*.rules.yml)
  if [ ${#rules[@]} -gt 0 ]; then "$promtool" check rules "${rules[@]}"; fi
  RXSM_REQUIRE_TOOLS=1 "${UV:-uv}" run pytest -q -p no:cacheprovider tests/test_promtool.py \
    tests/e2e/test_promtool.py
}

case "${1:-check}" in
  install) install_promtool ;;
  check) check ;;
  *) echo "usage: $0 [install|check]" >&2; exit 2 ;;
esac
