#!/usr/bin/env bash
# Installs the system packages livetables needs, when missing.
#   (always)  Java 17+ and Maven: the local Kafka broker's jars are fetched with Maven;
#             Node.js/npm: the Perspective browser packages are installed with npm;
#             a C compiler and the Python headers: the install compiles the native Kafka
#             batch reader (connectors/_kafkabatch.c).
#   --test    also Chromium (browser tests), Prometheus with promtool (the metrics lint,
#             the dashboard's query tests and the alert rules' tests), and podman, runc and
#             debootstrap (the container image is built and run from a locally made base).
# Safe to run again: it only installs what is not already there.
set -euo pipefail

need=()
if ! command -v java >/dev/null 2>&1; then need+=(openjdk-17-jre-headless); fi
if ! command -v mvn >/dev/null 2>&1; then need+=(maven); fi
if ! command -v npm >/dev/null 2>&1; then need+=(npm); fi
if ! command -v cc >/dev/null 2>&1; then need+=(gcc libc6-dev); fi
python_headers="$(${PYTHON:-python3} -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null || true)"
if [ -n "$python_headers" ] && [ ! -f "$python_headers/Python.h" ]; then need+=(python3-dev); fi
if [ "${1:-}" = "--test" ]; then
  if [ ! -x /usr/bin/chromium ]; then need+=(chromium); fi
  if ! command -v prometheus >/dev/null 2>&1; then need+=(prometheus); fi
  if ! command -v podman >/dev/null 2>&1; then need+=(podman); fi
  # runc: the default crun fails on hosts with hybrid cgroups (see scripts/podman-env.sh).
  if ! command -v runc >/dev/null 2>&1 && [ ! -x /usr/sbin/runc ]; then need+=(runc); fi
  if ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ]; then
    need+=(debootstrap)
  fi
fi

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "livetables: installing system packages: ${need[*]}" >&2
if ! command -v apt-get >/dev/null 2>&1; then
  echo "livetables: please install ${need[*]} with your package manager" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
