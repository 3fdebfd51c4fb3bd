#!/usr/bin/env python3
"""The reference Python loop of the Pulsar pipeline benchmark (tests/benches/pulsar_pipeline.rs).

Consumes --count messages from --input (Shared subscription, receiver queue 1000, from the
earliest message), sends each payload + b"!" to --output (batching disabled, the send queue
blocking when full) and acknowledges each input in its output's send callback, once the broker
has a receipt for the output: at-least-once, as the pfn worker does.

Prints `first` to stdout at the first input, and one JSON line when every input is acknowledged:
  {"count": N, "elapsed_s": ..., "cpu_s": ..., "failed_sends": ...}
elapsed_s runs from the first receive to the last acknowledgement; cpu_s is this process's
user + system time (/proc/self/stat) over the same window. Then, when --wait-stdin is given,
it waits for stdin to close before exiting, so that the bench can read /proc/<pid>/stat while
the process is still there.

Run with the venv of scripts/setup.sh:
  target/pulsar-venv/bin/python scripts/bench-pulsar.py --url pulsar://127.0.0.1:PORT \
      --input T --output T2 --count 100000
"""

import argparse
import json
import os
import sys
import threading
import time

import pulsar

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds():
    """This process's user + system time, from /proc/self/stat (fields 14 and 15)."""
    with open("/proc/self/stat") as stat:
        # The command name (field 2) may hold spaces: split after its closing parenthesis.
        fields = stat.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state), so utime (14) and stime (15) are fields[11] and fields[12].
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="pulsar://host:port of the broker")
    parser.add_argument("--input", required=True, help="the topic to consume")
    parser.add_argument("--output", required=True, help="the topic to produce to")
    parser.add_argument("--count", type=int, required=True, help="inputs to process, then stop")
    parser.add_argument("--subscription", default="bench-python", help="the input subscription")
    parser.add_argument("--wait-stdin", action="store_true", help="after the result, wait for stdin to close")
    args = parser.parse_args()

    # The client's own log, warnings and up, goes to stderr: stdout carries only the two lines
    # the bench reads (the default logger writes INFO lines to stdout). A Python `logging`
    # logger would do too, at twice the CPU per message: the C++ client asks it whether each
    # level is enabled, taking the GIL every time.
    client = pulsar.Client(args.url, logger=pulsar.FileLogger(pulsar.LoggerLevel.Warn, "/dev/stderr"))
    consumer = client.subscribe(
        args.input,
        args.subscription,
        consumer_type=pulsar.ConsumerType.Shared,
        receiver_queue_size=1000,
        initial_position=pulsar.InitialPosition.Earliest,
        negative_ack_redelivery_delay_ms=100,
    )
    producer = client.create_producer(args.output, batching_enabled=False, block_if_queue_full=True)

    done = threading.Event()
    # Only the client's one I/O thread runs the callbacks, so the state needs no lock.
    state = {"acked": 0, "failed": 0, "end": None, "cpu_end": None}

    def sent(message):
        def callback(result, _message_id):
            if result == pulsar.Result.Ok:
                consumer.acknowledge(message)
                state["acked"] += 1
                if state["acked"] == args.count:
                    state["end"] = time.monotonic()
                    state["cpu_end"] = cpu_seconds()
                    done.set()
            else:
                # Redelivered by the broker: at-least-once, as the worker does it.
                state["failed"] += 1
                consumer.negative_acknowledge(message)

        return callback

    message = consumer.receive()
    start, cpu_start = time.monotonic(), cpu_seconds()
    # Tells the bench the window has started, so that it can read the CPU counters around it.
    print("first", flush=True)
    producer.send_async(message.data() + b"!", sent(message))
    for _ in range(args.count - 1):
        message = consumer.receive()
        producer.send_async(message.data() + b"!", sent(message))
    # Only after a failed send (none in a fault-free run) does anything come again.
    while not done.is_set():
        try:
            message = consumer.receive(timeout_millis=100)
        except pulsar.Timeout:
            continue
        producer.send_async(message.data() + b"!", sent(message))
    result = {
        "count": state["acked"],
        "elapsed_s": state["end"] - start,
        "cpu_s": state["cpu_end"] - cpu_start,
        "failed_sends": state["failed"],
    }
    print(json.dumps(result), flush=True)
    if args.wait_stdin:
        sys.stdin.read()
    producer.close()
    consumer.close()
    client.close()


if __name__ == "__main__":
    main()
