#!/usr/bin/env bash
# One-step setup on Debian 12: installs the Debian packages in scripts/deps-apt.txt, builds ./dsv3
# and the tests (make), and builds the text corpus in data/corpus/ (scripts/build_corpus.sh, which
# installs its own packages). Idempotent: packages already present are not reinstalled, make only
# rebuilds what changed, and the corpus is skipped when up to date. Run as root (or with sudo
# available) on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi

pkgs=$(grep -v '^\s*#' scripts/deps-apt.txt | awk 'NF{print $1}')
pkgs="$pkgs dict-gcide dict-jargon dict-devil fortunes fortunes-min bible-kjv bible-kjv-text python3"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "setup: installing$missing" >&2
  $SUDO apt-get update >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends $missing >&2
else
  echo "setup: Debian packages present" >&2
fi

make -j"$(nproc)" >&2
bash scripts/build_corpus.sh
echo "setup: done (dsv3 and tests built, corpus in data/corpus/)" >&2
