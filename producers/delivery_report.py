"""`--delivery-report FILE` of `publish` and `simulate`: what became of every record handed over.

One JSON object per line, one line per record handed to the producer, written as the broker answers
(so not in input order):

    {"seq": 12, "topic": "p.mic.orders", "acknowledged": true, "partition": 3, "offset": 1207}
    {"seq": 13, "topic": "p.mic.orders", "acknowledged": false, "error": "KafkaTimeoutError: ..."}

`seq` is the record's ground-truth sequence number (`simulate`; `line`: its input line for
`publish`), `topic` the physical topic. An acknowledged record is in the topic at `partition` and
`offset`. A failed one was refused, or got no answer within the delivery timeout: it was not sent,
or sent without confirmation (Kafka cannot tell which; re-sending it is safe, its `event_id` makes a
copy a duplicate). `finish` adds, as failed, every record handed over that never got an answer.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import IO

import orjson

from producers.publisher import Delivery

NO_ANSWER = "no acknowledgement before the producer stopped"


class DeliveryReport:
    """Writes the report of one run; `handed` before each send, `__call__` as `on_delivery`."""

    def __init__(self, path: Path, tag_name: str = "seq") -> None:
        self.path = path
        self.tag_name = tag_name
        self._file: IO[bytes] = path.open("wb")
        self._lock = threading.Lock()
        self._pending: dict[object, str] = {}
        self.acknowledged = 0
        self.failed = 0

    def handed(self, tag: object, topic: str) -> None:
        """`tag` is about to be handed to the producer (for the physical `topic`)."""
        with self._lock:
            self._pending[tag] = topic

    def __call__(self, delivery: Delivery) -> None:
        line: dict[str, object] = {self.tag_name: delivery.tag, "topic": delivery.topic}
        if delivery.acknowledged:
            line.update(acknowledged=True, partition=delivery.partition, offset=delivery.offset)
        else:
            line.update(acknowledged=False, error=delivery.error)
        with self._lock:
            self._pending.pop(delivery.tag, None)
            self._file.write(orjson.dumps(line) + b"\n")
            if delivery.acknowledged:
                self.acknowledged += 1
            else:
                self.failed += 1

    def finish(self) -> None:
        """Record every record still without an answer as failed, and close the file."""
        with self._lock:
            for tag, topic in self._pending.items():
                line = {self.tag_name: tag, "topic": topic, "acknowledged": False, "error": NO_ANSWER}
                self._file.write(orjson.dumps(line) + b"\n")
                self.failed += 1
            self._pending.clear()
            self._file.close()
