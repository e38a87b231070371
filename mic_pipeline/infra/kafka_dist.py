"""The Apache Kafka broker's jars, fetched from Maven Central once into the cache directory.

`infra/kafka/pom.xml` lists the broker and its logging binding; Maven's
`dependency:copy-dependencies` copies the resolved jars into
`<cache_dir>/kafka-<digest of the pom>/libs/`. The directory is complete only when its
`COMPLETE` stamp exists: the download goes to a temporary directory that is renamed into place,
under a file lock, so an interrupted or concurrent fetch never leaves a half-filled classpath.
A changed pom (another Kafka version) gets a new directory; the old one stays until removed.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

INFRA_KAFKA_DIR = Path(__file__).resolve().parents[2] / "infra" / "kafka"
POM_PATH = INFRA_KAFKA_DIR / "pom.xml"
LOG4J2_CONFIG_PATH = INFRA_KAFKA_DIR / "log4j2.xml"
STAMP_NAME = "COMPLETE"
MAVEN_TIMEOUT_S = 900.0


class KafkaFetchError(RuntimeError):
    """Maven could not supply the broker's jars."""


@dataclass(frozen=True)
class KafkaDistribution:
    """A complete set of broker jars on disk."""

    root: Path

    @property
    def libs(self) -> Path:
        """The directory holding every jar of the broker's runtime classpath."""
        return self.root / "libs"

    @property
    def classpath(self) -> str:
        """The JVM `-cp` argument naming every jar of `libs`."""
        return str(self.libs / "*")


def pom_digest(pom: Path = POM_PATH) -> str:
    """A short content hash of the pom: the cache key of the jars it resolves to."""
    return hashlib.sha256(pom.read_bytes()).hexdigest()[:16]


def distribution_dir(cache_dir: Path, pom: Path = POM_PATH) -> Path:
    """Where the jars of `pom` live inside `cache_dir` (complete or not)."""
    return cache_dir / f"kafka-{pom_digest(pom)}"


def cached_distribution(cache_dir: Path, pom: Path = POM_PATH) -> KafkaDistribution | None:
    """The already fetched distribution for `pom`, or None if it is not (completely) there."""
    root = distribution_dir(cache_dir, pom)
    return KafkaDistribution(root) if (root / STAMP_NAME).is_file() else None


def fetch_kafka(
    cache_dir: Path,
    *,
    pom: Path = POM_PATH,
    mvn: str = "mvn",
    progress: Callable[[str], None] = lambda message: None,
) -> KafkaDistribution:
    """The broker's jars for `pom`, downloading them with Maven unless already cached.

    Idempotent and safe to call from concurrent processes. Raises `KafkaFetchError` with Maven's
    output when the download fails (for example when Maven Central is unreachable).
    """
    existing = cached_distribution(cache_dir, pom)
    if existing is not None:
        return existing
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".kafka-fetch.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        existing = cached_distribution(cache_dir, pom)
        if existing is not None:
            return existing
        root = distribution_dir(cache_dir, pom)
        staging = root.with_name(f"{root.name}.partial-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        progress(f"fetching the Kafka broker's jars with Maven into {root} ...")
        _copy_dependencies(mvn, pom, staging / "libs")
        (staging / STAMP_NAME).write_text(f"{pom_digest(pom)}\n")
        shutil.rmtree(root, ignore_errors=True)
        staging.rename(root)
    return KafkaDistribution(root)


def _copy_dependencies(mvn: str, pom: Path, libs: Path) -> None:
    command = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={libs}",
        "-DincludeScope=runtime",
    ]
    try:
        completed = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=MAVEN_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as exc:
        raise KafkaFetchError(f"Maven ({mvn}) is not installed: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise KafkaFetchError(f"Maven did not finish within {MAVEN_TIMEOUT_S:.0f} s") from exc
    if completed.returncode != 0:
        output = (completed.stdout + completed.stderr).strip().splitlines()
        tail = "\n".join(output[-30:])
        raise KafkaFetchError(f"{' '.join(command)} failed with exit code {completed.returncode}:\n{tail}")
    if not any(libs.glob("kafka_2.13-*.jar")):
        raise KafkaFetchError(f"Maven finished but {libs} holds no kafka_2.13 jar")
