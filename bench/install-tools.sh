#!/usr/bin/env bash
# What `make bench` needs before it measures: the Debian packages it drives (nginx, haproxy,
# apache2, wrk, h2load, hyperfine, taskset, gcc for bench/noresume.c, gzip, grep), installed by
# the one installer the tests use too (tests/install-sysdeps.sh: idempotent, asks no registry
# when everything is there), and the packages' own nginx/HAProxy/Apache services stopped: the
# bench starts its own instances on free ports of 127.0.0.1 with its own configuration files.
# mtail (issue 3's "mtail in one-shot mode with six counters", timed by bench/logbench.py) is
# installed here, not by the tests' installer: `make test` never runs it (tests/bench asserts
# logbench's skipped reason when it is absent).
set -euo pipefail
bash "$(dirname "$0")/../tests/install-sysdeps.sh"
if ! command -v mtail >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "the bench times mtail (Debian package mtail); run as root or: apt-get install mtail" >&2
    exit 1
  fi
  echo "installing the Debian package mtail for the log benchmark"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d: the package's own mtail service must not start (it would serve :3903 and
  # take CPU from the measurement); removed again right after
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y -qq --no-install-recommends mtail >/dev/null
  rm -f /usr/sbin/policy-rc.d
  trap - EXIT
fi
# Services installed earlier (or by another package) may be running: they would take
# CPU 0/1 from the measurement. Stop them when this machine runs systemd or sysvinit.
for svc in nginx haproxy apache2 mtail; do
  if [ "$(id -u)" -eq 0 ] && command -v service >/dev/null 2>&1 && service "$svc" status >/dev/null 2>&1; then
    echo "stopping the system's $svc service for the bench (start it again with: service $svc start)"
    service "$svc" stop >/dev/null 2>&1 || true
  fi
done
exit 0
