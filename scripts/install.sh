#!/usr/bin/env bash
# Install Wharf into ./.venv. With --test, also everything the test suite needs:
# Debian packages for the real clients and peers (skopeo, podman, docker.io, the reference
# registry, PostgreSQL) and the Python test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO=sudo
WITH_TESTS=0
[[ "${1:-}" == "--test" ]] && WITH_TESTS=1

APT_PKGS=(python3 python3-venv python3-pip ca-certificates curl openssl)
if [[ $WITH_TESTS == 1 ]]; then
  # real clients and peers for the end-to-end tests and the benchmark
  APT_PKGS+=(skopeo podman uidmap runc docker.io docker-registry iproute2)
  # PostgreSQL server binaries: the tests start a private cluster of their own
  APT_PKGS+=(postgresql)
  # Ceph (one mon, one OSD, radosgw): the tests start a private S3 endpoint of their own
  APT_PKGS+=(radosgw ceph-mon ceph-osd ceph-common)
  # OpenLDAP server and tools: the LDAP tests start a private slapd of their own
  APT_PKGS+=(slapd ldap-utils)
  # Chromium for the web UI tests (driven by the playwright package; never `playwright install`)
  APT_PKGS+=(chromium)
  # a CJK font, so the web UI screenshots in Simplified Chinese show glyphs, not boxes
  APT_PKGS+=(fonts-wqy-microhei)
  # libfaketime: tests move a real server's clock (retention ages, leases) without sleeping
  APT_PKGS+=(faketime)
  # Prometheus and promtool: the tests check deploy/'s alert rules and dashboard queries
  APT_PKGS+=(prometheus)
  # mmdebstrap: the container test makes its Debian base image (no base registry is reachable)
  APT_PKGS+=(mmdebstrap)
fi
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
if [[ $WITH_TESTS == 1 ]]; then
  .venv/bin/pip install -q -e '.[test]'
else
  .venv/bin/pip install -q -e .
fi
echo "wharf installed in $(pwd)/.venv"
