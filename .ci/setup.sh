#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine: system packages, then the pinned virtualenv.
# Fast when already done: it only installs what is missing or changed.
#
#   bash .ci/setup.sh            what the pipeline needs (make demo, make airflow)
#   bash .ci/setup.sh dev        plus the test and lint tools (make test, make lint)
#   bash .ci/setup.sh spark      plus the dbt spark target: pyspark, dbt-spark, Java, the Delta jars
#
# Each extra name X installs requirements-X.txt and the system packages listed for it below.
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS=("$@")
has_extra() { local e; for e in "${EXTRAS[@]}"; do [ "$e" = "$1" ] && return 0; done; return 1; }

SYSTEM_PACKAGES=(
  unixodbc unixodbc-dev   # pyodbc's driver manager
  libsqliteodbc           # SQLite3 ODBC driver: the embedded Azure SQL stand-in
)
if has_extra dev; then
  SYSTEM_PACKAGES+=(
    odbc-postgresql       # PostgreSQL ODBC driver: extractor tests on a server with real types
    postgresql            # throwaway clusters for those tests
    chromium              # headless browser for the UI tests
  )
  # Java and Maven assemble a real Apache Kafka (KRaft) for the integration tests; the machine
  # image usually has them already.
  command -v java >/dev/null || SYSTEM_PACKAGES+=(default-jdk-headless)
  command -v mvn >/dev/null || SYSTEM_PACKAGES+=(maven)
fi
if has_extra spark; then
  # Spark runs on a JVM; Maven fetches the Delta Lake jars once (tests/support/spark_delta)
  command -v java >/dev/null || SYSTEM_PACKAGES+=(default-jdk-headless)
  command -v mvn >/dev/null || SYSTEM_PACKAGES+=(maven)
fi
# uv installs the virtualenv; it comes from PyPI through pip when it is not there yet. A bare Debian
# image (the CI workflow's debian:bookworm) has no pip.
if ! command -v uv >/dev/null && [ ! -x "$HOME/.local/bin/uv" ] && ! python3 -m pip --version >/dev/null 2>&1; then
  SYSTEM_PACKAGES+=(python3-pip)
fi

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
# Bytecode is compiled at install time: with PYTHONDONTWRITEBYTECODE set (as on CI machines and in many
# containers) Python would otherwise recompile dbt and Airflow from source in every process, which
# costs ~1.5 s per dbt start and more per Airflow task.
install_options="--compile-bytecode"
requirement_files=(requirements.txt)
for extra in "${EXTRAS[@]}"; do requirement_files+=("requirements-$extra.txt"); done

for requirements in "${requirement_files[@]}"; do
  # one stamp per file, covering the install options too: changing either re-runs that install once
  stamp=".venv/.stamp-$requirements.sha256"
  want=$( (cat "$requirements"; echo "$install_options") | sha256sum | cut -d' ' -f1)
  if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then continue; fi
  echo "==> installing the pinned $requirements into .venv"
  if ! command -v uv >/dev/null && [ ! -x "$("$PYTHON" -m site --user-base)/bin/uv" ]; then
    # Debian marks its Python "externally managed" (PEP 668) and refuses even a --user install
    # without PIP_BREAK_SYSTEM_PACKAGES; a --user install of uv leaves Debian's packages alone.
    PIP_ROOT_USER_ACTION=ignore PIP_BREAK_SYSTEM_PACKAGES=1 "$PYTHON" -m pip install -q --user uv ||
      PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install -q uv
  fi
  UV=$(command -v uv || echo "$("$PYTHON" -m site --user-base)/bin/uv")
  [ -x .venv/bin/python ] || "$UV" venv -q -p "$PYTHON" .venv
  "$UV" pip install -q $install_options -p .venv/bin/python -r "$requirements"
  # uv compiles only when it installs something; this covers a venv whose packages were already in place
  .venv/bin/python -m compileall -q -j 0 "$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null || true
  echo "$want" > "$stamp"
done
if has_extra spark; then
  .venv/bin/python -m tests.support.spark_delta >/dev/null
fi
echo "==> set-up done ($(.venv/bin/python --version), ${requirement_files[*]}, ODBC drivers: $(odbcinst -q -d | tr '\n' ' '))"
