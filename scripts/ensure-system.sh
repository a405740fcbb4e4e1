#!/usr/bin/env bash
# Install the Debian/Ubuntu packages kiemdich needs, only those missing.
# Called by `make test`, `make demo` and `make bench`; safe to re-run.
set -euo pipefail

PACKAGES=(
  mosquitto mosquitto-clients   # MQTT broker the tests start on free ports
  libzbar0                      # pyzbar's native library
  victoria-metrics              # time-series store (Influx line protocol in, PromQL out)
  chromium                      # headless browser for the web-screen tests
  fonts-noto-core               # Vietnamese glyphs in screenshots
  docker-compose                # `docker-compose config` validation of the production shape
  sqlite3                       # operators inspecting the embedded store
)
# Debian's python3 needs python3-venv for `python3 -m venv`.
if ! "${PYTHON:-python3}" -c 'import ensurepip, venv' 2>/dev/null; then
  PACKAGES+=(python3-venv)
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to apt-get install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "apt-get install: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
# The packaged brokers/TSDB must not grab the ports our tests and demo use.
for svc in victoria-metrics; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
    $SUDO systemctl disable --now "$svc" || true
  fi
done
