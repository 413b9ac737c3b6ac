"""The Delta Lake jars of the dbt ``spark`` target, fetched once from Maven Central.

pyspark (requirements-spark.txt) ships Spark itself; Delta Lake's two jars (``pom.xml`` beside this
file: delta-spark and delta-storage, their other transitive dependencies excluded) are copied by
``mvn dependency:copy-dependencies`` into ``${FITLAKE_CACHE_DIR:-~/.cache/fitlake}/delta-<version>/libs``,
the directory the ``spark`` profile in dbt_project/profiles.yml reads by default (``FITLAKE_SPARK_JARS``
overrides the list). Spark's own ``spark.jars.packages`` (Ivy) fails with the default settings here.

    python -m tests.support.spark_delta      # fetch if missing, print the comma-separated jar list
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["DELTA_VERSION", "DeltaSetupError", "delta_cache_dir", "ensure_delta_jars", "spark_jars"]

POM_PATH = Path(__file__).resolve().parent / "pom.xml"
DELTA_VERSION = re.search(r"<delta\.version>([^<]+)</delta\.version>", POM_PATH.read_text()).group(1).strip()
JAR_NAMES = (f"delta-spark_2.13-{DELTA_VERSION}.jar", f"delta-storage-{DELTA_VERSION}.jar")
_MARKER_NAME = ".complete"


class DeltaSetupError(RuntimeError):
    """The Delta jars could not be fetched."""


def delta_cache_dir() -> Path:
    """``${FITLAKE_CACHE_DIR:-~/.cache/fitlake}/delta-<version>`` (the profile's default)."""
    root = os.environ.get("FITLAKE_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "fitlake"
    return base / f"delta-{DELTA_VERSION}"


def _ready(libs: Path, marker: Path, digest: str) -> bool:
    try:
        return marker.read_text().strip() == digest and all((libs / name).is_file() for name in JAR_NAMES)
    except OSError:
        return False


def ensure_delta_jars() -> list[Path]:
    """The Delta jars, fetched with Maven the first time (a lock keeps concurrent runs apart)."""
    cache = delta_cache_dir()
    libs, marker = cache / "libs", cache / _MARKER_NAME
    digest = hashlib.sha256(POM_PATH.read_bytes()).hexdigest()
    if not _ready(libs, marker, digest):
        cache.mkdir(parents=True, exist_ok=True)
        with open(cache / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not _ready(libs, marker, digest):
                _fetch(cache, libs, marker, digest)
    return [libs / name for name in JAR_NAMES]


def spark_jars() -> str:
    """The value of ``spark.jars``: the Delta jars, comma-separated."""
    return ",".join(str(p) for p in ensure_delta_jars())


def _fetch(cache: Path, libs: Path, marker: Path, digest: str) -> None:
    mvn = shutil.which("mvn")
    if not mvn:
        raise DeltaSetupError(
            f"Apache Maven ('mvn') is not on PATH; it fetches the Delta Lake {DELTA_VERSION} jars once "
            "(apt-get install maven, or `bash .ci/setup.sh spark`), or set FITLAKE_SPARK_JARS to the jars."
        )
    tmp = cache / "libs.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    marker.unlink(missing_ok=True)
    cmd = [mvn, "-B", "-q", "-Dstyle.color=never", "-f", str(POM_PATH), "dependency:copy-dependencies",
           f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"]  # fmt: skip
    print(f"[spark_delta] fetching the Delta Lake {DELTA_VERSION} jars into {libs} (first time only)", file=sys.stderr)
    started = time.monotonic()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0 or not all((tmp / name).is_file() for name in JAR_NAMES):
        shutil.rmtree(tmp, ignore_errors=True)
        tail = "\n".join(proc.stdout.splitlines()[-30:])
        raise DeltaSetupError(f"Maven could not fetch the Delta jars (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    marker.write_text(digest + "\n")
    print(f"[spark_delta] fetched {len(JAR_NAMES)} jars in {time.monotonic() - started:.1f}s", file=sys.stderr)
