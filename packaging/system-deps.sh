#!/usr/bin/env bash
# Installs the Debian packages Kithnet needs, when they are missing and we are root.
# Called by the Makefile; safe to run again (it installs nothing when all are present).
set -euo pipefail

packages=(
  # fastecdsa (a libp2p dependency) builds from source where no wheel fits.
  build-essential libgmp-dev
  # Qt (PySide6) at run time, offscreen or on a screen.
  libegl1 libgl1 libfontconfig1 libglib2.0-0 libxkbcommon0 libdbus-1-3 fonts-dejavu-core
  fonts-noto-color-emoji  # reactions and replies are drawn with emoji
)
# Debian's own python3 makes virtual environments only with python3-venv.
if ! "${PYTHON:-python3}" -c 'import ensurepip' >/dev/null 2>&1; then
  packages+=(python3-venv)
fi
if [ "${1:-}" = "--screen" ]; then
  # A real window under Xvfb (make screenshots); Qt's xcb plugin needs these.
  packages+=(xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0)
fi

command -v dpkg-query >/dev/null 2>&1 || exit 0   # not Debian: nothing we can check
missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "kithnet: these Debian packages are missing: ${missing[*]}" >&2
  echo "kithnet: install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 0
fi
echo "kithnet: installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
