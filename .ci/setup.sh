#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine: system packages, then the pinned virtualenv.
# Fast when already done: it only installs what is missing or changed.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(
  unixodbc unixodbc-dev   # pyodbc's driver manager
  libsqliteodbc           # SQLite3 ODBC driver: the embedded Azure SQL stand-in
  odbc-postgresql         # PostgreSQL ODBC driver: extractor tests on a server with real types
  postgresql              # throwaway clusters for those tests
  chromium                # headless screenshots in the UI smoke test
)
# Java and Maven assemble a real Apache Kafka (KRaft) for the integration tests; the machine
# image usually has them already.
command -v java >/dev/null || SYSTEM_PACKAGES+=(default-jdk-headless)
command -v mvn >/dev/null || SYSTEM_PACKAGES+=(maven)

missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "==> installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts a default cluster when it installs postgresql; the tests start their own throwaway
  # ones, so stop the one this install started (a cluster that was already there is left alone).
  if [[ " ${missing[*]} " == *" postgresql "* ]] && command -v pg_lsclusters >/dev/null; then
    pg_lsclusters -h | awk '$4=="online"{print $1, $2}' | while read -r ver name; do $SUDO pg_ctlcluster "$ver" "$name" stop || true; done
  fi
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
stamp=.venv/.requirements.sha256
# the stamp covers the install options too: changing them re-runs the install once
install_options="--compile-bytecode"
want=$( (cat requirements.txt; echo "$install_options") | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> installing the pinned requirements into .venv"
  if ! command -v uv >/dev/null; then "$PYTHON" -m pip install -q --user uv || "$PYTHON" -m pip install -q uv; fi
  UV=$(command -v uv || echo "$("$PYTHON" -m site --user-base)/bin/uv")
  [ -x .venv/bin/python ] || "$UV" venv -q -p "$PYTHON" .venv
  # Bytecode is compiled at install time: with PYTHONDONTWRITEBYTECODE set (as on CI machines and in many
  # containers) Python would otherwise recompile dbt and Airflow from source in every process, which
  # costs ~1.5 s per dbt start and more per Airflow task.
  "$UV" pip install -q $install_options -p .venv/bin/python -r requirements.txt
  # uv compiles only when it installs something; this covers a venv whose packages were already in place
  .venv/bin/python -m compileall -q -j 0 "$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null || true
  echo "$want" > "$stamp"
fi
echo "==> set-up done ($(.venv/bin/python --version), $(odbcinst -q -d | tr '\n' ' '))"
