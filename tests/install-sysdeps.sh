#!/usr/bin/env bash
# Installs the real tools the tests and `make bench` drive, when missing (Debian packages);
# the one list: bench/install-tools.sh runs this, then stops the packages' services.
# Idempotent: on a machine that has them all it does nothing and asks no registry.
set -euo pipefail
# command -> Debian package
declare -A want=(
  [openssl]=openssl
  [curl]=curl
  [nginx]=nginx
  [haproxy]=haproxy
  [apache2]=apache2
  [prometheus]=prometheus
  [promtool]=prometheus
  [prometheus-pushgateway]=prometheus-pushgateway
  [testssl]=testssl.sh  # tests/hardening/test_tls_scan.py (sslyze pins cryptography < 47)
  # `make bench` and the bench harness's smoke test (tests/bench) drive these too
  [wrk]=wrk
  [h2load]=nghttp2-client
  [hyperfine]=hyperfine
  [taskset]=util-linux
  [gcc]=gcc  # builds the LD_PRELOAD shim bench/noresume.c
  [zcat]=gzip
  [grep]=grep
  [mtail]=mtail  # bench/logbench.py times it against tlslog scan (issue 3); tests/bench runs that on a small log
)
missing=()
for cmd in "${!want[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$cmd" ] && ! [ -x "/usr/bin/$cmd" ]; then
    missing+=("${want[$cmd]}")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" -ne 0 ]; then
  echo "tests need these Debian packages: $pkgs; run as root or install them: apt-get install $pkgs" >&2
  exit 1
fi
echo "installing Debian packages for the tests: $pkgs"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends keeps CI fast; policy-rc.d stops the packages' own services from starting
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
