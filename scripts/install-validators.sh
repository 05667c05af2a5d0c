#!/usr/bin/env bash
# Installs the real tools that check every rendered machine file and run the data-plane tests:
# nginx (nginx -t, and a real load balancer on loopback), prometheus (promtool + a real server),
# cloud-init (cloud-init schema), shellcheck; systemd-analyze comes with systemd; mtail (the load balancer's
# Nginx metrics: -compile_only and a real one in the data plane); certbot and pebble (an ACME test CA) for the
# load balancer's certificate issuance and renewal on loopback (tests/dataplane/test_acme.py); debootstrap builds
# the Debian root the boot test (bench/boot.py) runs the rendered cloud-init in (iproute2: its loopback-only
# network namespace).
# Debian/Ubuntu, as root (or via sudo). Services are NOT started: the tests run their own copies.
set -euo pipefail

packages=(nginx prometheus cloud-init shellcheck systemd mtail certbot pebble debootstrap iproute2)
missing=()
for cmd_pkg in nginx:nginx promtool:prometheus cloud-init:cloud-init shellcheck:shellcheck systemd-analyze:systemd \
    mtail:mtail certbot:certbot pebble:pebble debootstrap:debootstrap ip:iproute2; do
  command -v "${cmd_pkg%%:*}" >/dev/null 2>&1 || missing+=("${cmd_pkg##*:}")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "validators already installed: ${packages[*]}"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# Keep package postinst scripts from starting nginx/prometheus daemons on this machine.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod +x "$policy"
  created_policy=1
fi
# An `if`, not `[ ... ] && ...`: the latter returns 1 when nothing was created (an image that ships its
# own policy-rc.d), and an EXIT trap's last status becomes the script's.
cleanup() {
  if [ "$created_policy" -eq 1 ]; then $SUDO rm -f "$policy"; fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}"
