#!/bin/sh
# Installs Debian's Chromium for the dashboard's browser test, when it is missing.
set -eu
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "the dashboard's browser test needs Chromium at /usr/bin/chromium:" >&2
    echo "install it as root with: apt-get install -y chromium" >&2
    exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
