#!/usr/bin/env bash
# Installs what `make bench` drives, when missing (Debian packages), and makes sure
# the packages' own nginx/HAProxy services are not running: the bench starts its own
# instances on free ports of 127.0.0.1 with its own configuration files.
# Idempotent: on a machine that has everything it installs nothing and asks no registry.
set -euo pipefail
# command -> Debian package
declare -A want=(
  [nginx]=nginx
  [haproxy]=haproxy
  [apache2]=apache2    # the Apache 2.4 mod_ssl + mod_proxy row
  [wrk]=wrk
  [h2load]=nghttp2-client
  [openssl]=openssl
  [hyperfine]=hyperfine
  [taskset]=util-linux
  [gcc]=gcc            # builds the LD_PRELOAD shim bench/noresume.c
  [zcat]=gzip
  [grep]=grep
)
missing=()
for cmd in "${!want[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$cmd" ] && ! [ -x "/usr/bin/$cmd" ]; then
    missing+=("${want[$cmd]}")
  fi
done
if [ "${#missing[@]}" -ne 0 ]; then
  pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  if [ "$(id -u)" -ne 0 ]; then
    echo "make bench needs these Debian packages: $pkgs; run as root or: sudo apt-get install $pkgs" >&2
    exit 1
  fi
  echo "installing Debian packages for the bench: $pkgs"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d exit 101: the packages' own services are not started by the install
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
fi
# Services installed earlier (or by another package) may be running: they would take
# CPU 0/1 from the measurement. Stop them when this machine runs systemd or sysvinit.
for svc in nginx haproxy apache2; do
  if [ "$(id -u)" -eq 0 ] && command -v service >/dev/null 2>&1 && service "$svc" status >/dev/null 2>&1; then
    echo "stopping the system's $svc service for the bench (start it again with: service $svc start)"
    service "$svc" stop >/dev/null 2>&1 || true
  fi
done
exit 0
