#!/usr/bin/env bash
# The Debian packages microbrain and its tests use: the one list, called by the README's
# install command and by .ci/run. Idempotent: installs only what is missing (apt-get update
# once, and only then); a PostgreSQL server it installs is set up for the tests (trust on
# loopback, as a throwaway CI machine needs). Prints what it did.
#
#   scripts/install-system-deps.sh          install what is missing (root, or sudo)
#   scripts/install-system-deps.sh --check  list what is missing; exit 1 if anything is
#   scripts/install-system-deps.sh --list   print the list, one a line
set -euo pipefail

PACKAGES=(
  mosquitto                    # the cloud broker (and its dynamic-security plugin)
  postgresql                   # the server the tests create their databases on
  postgresql-client            # pg_isready
  opencv-doc                   # sample media: vtest.avi
  darknet                      # sample media: dog.jpg, person.jpg
  espeak-ng                    # cmd/announce's text to speech
  openssl                      # the TLS tests' throwaway CA
  python3-venv                 # python3 -m venv (Debian's python3 lacks ensurepip)
  # the tests' RTSP camera: GStreamer's RTSP server under Debian's python3
  # (tests/edge/video/rtsp_camera.py)
  python3-gi
  gir1.2-gst-rtsp-server-1.0
  gstreamer1.0-plugins-base    # appsrc
  gstreamer1.0-plugins-good    # rtpjpegpay
  # the console's browser tests and benchmark: Playwright drives Debian's Chromium (its own
  # browser download does not work offline), and Chinese needs a CJK font or renders as boxes
  chromium
  fonts-noto-cjk
  # the daily report's test reads its PDF's Chinese text back (pdftotext)
  poppler-utils
)

if [ "${1:-}" = "--list" ]; then printf '%s\n' "${PACKAGES[@]}"; exit 0; fi

installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

command -v dpkg-query >/dev/null || { echo "not a Debian system: install the equivalents of: ${PACKAGES[*]}" >&2; exit 2; }

missing=()
for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done

if [ "${1:-}" = "--check" ]; then
  [ ${#missing[@]} -eq 0 ] && { echo "all ${#PACKAGES[@]} Debian packages are installed"; exit 0; }
  echo "missing: ${missing[*]}"
  exit 1
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all ${#PACKAGES[@]} installed"
  exit 0
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "missing ${missing[*]}; run as root: apt-get install ${missing[*]}" >&2; exit 1; }
  as_root=(sudo)
fi
fresh_pg=
[ -n "$(ls /etc/postgresql 2>/dev/null)" ] || fresh_pg=1

echo "system packages: installing ${missing[*]}"
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
  "${missing[@]}" >/dev/null

if [ -n "$fresh_pg" ] && [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
  # a server installed just now: the tests connect as 'postgres' over loopback, no password
  version="$(ls /etc/postgresql)"
  printf 'local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n' \
    | "${as_root[@]}" tee "/etc/postgresql/$version/main/pg_hba.conf" >/dev/null
  # the package may have started it with the default rules already
  "${as_root[@]}" pg_ctlcluster --skip-systemctl-redirect "$version" main reload 2>/dev/null || true
  echo "system packages: PostgreSQL $version set to trust loopback connections (for the tests)"
fi
