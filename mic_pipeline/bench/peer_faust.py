"""Peer 2, faust's own ceiling: one agent on the four input topics, raw bytes, msgspec decode, no output.

faust-streaming with its defaults (memory store, web server off) but the worker's fetch size; the
same faust and aiokafka as the stream worker. The clock runs from the first record the agent sees
to the last expected one; the agent then writes the result and the bench stops the worker (SIGINT).
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from mic_pipeline.bench.peer import PeerArgs, write_result

MAX_POLL_RECORDS = 5000
"""As the stream worker's (`streams.app.MAX_POLL_RECORDS`): the same consumer settings."""


def run(args: PeerArgs) -> None:
    import dataclasses

    import faust

    from mic_pipeline.config import Settings
    from mic_pipeline.kafka_clients import faust_app_options

    settings = dataclasses.replace(Settings.from_env(), kafka_bootstrap=args.bootstrap)
    app = faust.App(
        args.group,
        **faust_app_options(settings),
        store="memory://",
        datadir=str(args.work / "faust"),
        web_enabled=False,
        autodiscover=False,
        topic_partitions=args.partitions,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=MAX_POLL_RECORDS,
    )
    topic = app.topic(*args.inputs, key_serializer="raw", value_serializer="raw")
    decoder = msgspec.json.Decoder()
    seen = {"records": 0, "invalid": 0}
    clock: dict[str, float] = {}

    async def decode(stream: Any) -> None:
        async for value in stream:
            if not clock:
                clock["first"] = time.perf_counter()
            try:
                decoder.decode(value)
            except (msgspec.DecodeError, RecursionError):  # the deep-nesting poison pill
                seen["invalid"] += 1
            seen["records"] += 1
            if seen["records"] == args.expect:
                write_result(args, args.expect, time.perf_counter() - clock["first"], invalid=seen["invalid"])

    app.agent(topic, name="decode")(decode)
    faust.Worker(app, loglevel="warning", redirect_stdouts=False).execute_from_commandline()
