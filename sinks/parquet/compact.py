"""`mic-pipeline compact`: merge the small files of closed days without changing what readers see.

A day directory `event_date=D` with D before `closed_before` is compacted when it holds two or more
files that are *committed*: compacted files, and sink files whose last offset is below the Parquet
sink group's committed offset for their topic-partition (a file of an uncommitted attempt may still
be deleted and rewritten by the sink, so it is left alone). The merged file and hard links of the files
left alone go into a hidden sibling directory, which is then swapped with the live one in a single
`renameat2(RENAME_EXCHANGE)`: a reader lists either the old set of files or the new one, and both
hold exactly the same rows. The table's lock keeps the sink out meanwhile.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import hashlib
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mic_pipeline.config import Settings
from schemas.topics import Family
from sinks.parquet.files import fsync_dir
from sinks.parquet.layout import FileName, parse_partition_dir, table_dir
from sinks.parquet.quarantine import RELEASED_PREFIX
from sinks.parquet.sink import table_lock

log = logging.getLogger(__name__)

Committed = Mapping[tuple[str, int], int]
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(first: Path, second: Path) -> None:
    """Atomically swap two directories (Linux `renameat2` with `RENAME_EXCHANGE`)."""
    libc = ctypes.CDLL(None, use_errno=True)
    result = libc.renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"renameat2 exchange {first} <-> {second}: {os.strerror(errno)}")


def is_committed(path: Path, committed: Committed) -> bool:
    """True if every row of the file is below its partition's committed offset (or it is compacted,
    or a row released from quarantine: both are final)."""
    name = FileName.parse(path.name)
    if name is None:
        return path.name.startswith(("compacted+", RELEASED_PREFIX))
    return name.last_offset < committed.get((name.topic, name.partition), -1)


def compact_day(day_dir: Path, committed: Committed) -> int:
    """Merge the committed files of one day directory; returns how many files were merged (0: none)."""
    files = sorted(p for p in day_dir.glob("*.parquet") if not p.name.startswith((".", "_")))
    mergeable = [p for p in files if is_committed(p, committed)]
    if len(mergeable) < 2:
        return 0
    merged = pa.concat_tables([pq.ParquetFile(p).read() for p in mergeable], promote_options="default")
    digest = hashlib.sha256("\n".join(p.name for p in mergeable).encode()).hexdigest()[:20]
    staging = day_dir.with_name(f".{day_dir.name}.compacting")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    with open(staging / f"compacted+{digest}.parquet", "wb") as handle:
        pq.write_table(merged, handle, compression="zstd")
        handle.flush()
        os.fsync(handle.fileno())
    for kept in files:
        if kept not in mergeable:
            os.link(kept, staging / kept.name)
    fsync_dir(staging)
    exchange(staging, day_dir)
    fsync_dir(day_dir.parent)
    shutil.rmtree(staging)
    log.info("compacted %d files of %s into one (%d rows)", len(mergeable), day_dir, merged.num_rows)
    return len(mergeable)


def compact_table(root: Path, table: str, closed_before: dt.date, committed: Committed) -> list[str]:
    """Compact every closed day of one table; one report line per compacted day."""
    directory = table_dir(root, table)
    if not directory.exists():
        return []
    report = []
    with table_lock(root, table):
        for day_dir in sorted(directory.iterdir()):
            day = parse_partition_dir(day_dir.name)
            if day is None or day >= closed_before or not day_dir.is_dir():
                continue
            merged = compact_day(day_dir, committed)
            if merged:
                report.append(f"{table}/{day_dir.name}: {merged} files -> 1")
    return report


def committed_offsets(settings: Settings, group_id: str) -> dict[tuple[str, int], int]:
    """The group's committed offsets, `(topic, partition) -> next offset to read`."""
    from kafka import KafkaAdminClient

    from mic_pipeline.kafka_clients import kafka_python_options

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **kafka_python_options(settings))
    try:
        offsets = admin.list_group_offsets({group_id: None}).get(group_id, {})
    finally:
        admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def compact_warehouse(settings: Settings, *, closed_before: dt.date, group_id: str) -> list[str]:
    """Compact all tables of the Parquet warehouse of `settings`."""
    committed = committed_offsets(settings, group_id)
    report = []
    for family in Family:
        report.extend(compact_table(settings.warehouse_dir, family.table, closed_before, committed))
    return report
