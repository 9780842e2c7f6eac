#!/usr/bin/env bash
# What `make bench` needs before it measures: the Debian packages it drives (nginx, haproxy,
# apache2, wrk, h2load, hyperfine, taskset, gcc for bench/noresume.c, gzip, grep, mtail), installed by
# the one installer the tests use too (tests/install-sysdeps.sh: idempotent, asks no registry
# when everything is there), and the packages' own nginx/HAProxy/Apache services stopped: the
# bench starts its own instances on free ports of 127.0.0.1 with its own configuration files.
set -euo pipefail
bash "$(dirname "$0")/../tests/install-sysdeps.sh"
# Services installed earlier (or by another package) may be running: they would take
# CPU 0/1 from the measurement. Stop them when this machine runs systemd or sysvinit.
for svc in nginx haproxy apache2 mtail; do
  if [ "$(id -u)" -eq 0 ] && command -v service >/dev/null 2>&1 && service "$svc" status >/dev/null 2>&1; then
    echo "stopping the system's $svc service for the bench (start it again with: service $svc start)"
    service "$svc" stop >/dev/null 2>&1 || true
  fi
done
exit 0
