#!/usr/bin/env bash
# Install Debian's Chromium and chromedriver for the operator web page's browser test.
# Idempotent: does nothing when both are already installed. Needs root (apt-get).
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
command -v chromium >/dev/null && command -v chromedriver >/dev/null
