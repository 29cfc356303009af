"""The physical limit of this stack: three consume-then-produce hops with no business logic.

Same topology as rxsm (three hops, the same partitions, acks="all" with idempotence, commit after the
produced records are acknowledged), records of the same size; batched consumption and pipelined sends.
Each hop runs in its own process, as each rxsm service does:

    python -m bench.raw_pipeline hop <bootstrap> <in topic> <out topic> <group>
"""

import asyncio
import json
import sys
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

RECORD_BYTES = 400


def record(sequence: int) -> bytes:
    """A ~400-byte JSON record stamped with its feed time (ns)."""
    head = {"seq": sequence, "fed_ns": time.time_ns(), "pad": ""}
    pad = RECORD_BYTES - len(json.dumps(head))
    return json.dumps({**head, "pad": "x" * max(pad, 0)}).encode()


async def hop(bootstrap: str, source: str, target: str, group: str) -> None:
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
        fetch_max_wait_ms=20,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2
    )
    await consumer.start()
    await producer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=100, max_records=500)
            sends = [
                await producer.send(target, message.value, key=message.key)
                for messages in batches.values()
                for message in messages
            ]
            if sends:
                await asyncio.gather(*sends)
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":
    _, command, *args = sys.argv
    if command != "hop":
        raise SystemExit("usage: python -m bench.raw_pipeline hop BOOTSTRAP IN OUT GROUP")
    asyncio.run(hop(*args))
