#!/usr/bin/env python3
"""Sends mixed events to Switchyard with the real Segment Python library
(segment-analytics-python from PyPI) and writes what it sent, one JSON per line.

Used by cli/tests/segment_python.rs, which reads the Kafka topic back and checks that
every messageId arrived exactly once with its fields intact.
"""
import argparse
import json
import sys

from segment.analytics import Client


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--write-key", required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    errors = []
    client = Client(
        args.write_key,
        host=args.host,
        gzip=True,
        upload_size=100,
        max_queue_size=args.count * 2,
        on_error=lambda error, batch: errors.append(f"{error} ({len(batch)} events)"),
    )
    calls = [
        lambda i: client.identify(f"user-{i % 50}", {"email": f"u{i}@example.com", "plan": "pro", "seats": i}),
        lambda i: client.track(f"user-{i % 50}", "Order Completed", {"order_id": f"o-{i}", "revenue": i * 1.5, "tags": ["a", "b"]}),
        lambda i: client.page(anonymous_id=f"anon-{i}", category="Docs", name=f"Page {i}", properties={"path": f"/p/{i}"}),
        lambda i: client.screen(f"user-{i % 50}", "Settings", f"Screen {i}", {"dark_mode": i % 2 == 0}),
        lambda i: client.group(f"user-{i % 50}", f"group-{i % 7}", {"name": f"Acme {i % 7}", "employees": i}),
        lambda i: client.alias(f"anon-{i}", f"user-{i % 50}"),
    ]
    sent = []
    for i in range(args.count):
        ok, message = calls[i % len(calls)](i)
        if not ok:
            print(f"event {i} was not queued", file=sys.stderr)
            return 1
        sent.append(message)
    client.flush()
    client.shutdown()
    if errors:
        print("upload errors: " + "; ".join(errors), file=sys.stderr)
        return 1
    with open(args.out, "w") as out:
        for message in sent:
            out.write(json.dumps(message, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
