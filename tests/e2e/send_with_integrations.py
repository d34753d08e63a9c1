#!/usr/bin/env python3
"""Sends track events that steer themselves with the `integrations` object and consent
preferences, through a real server library: Segment's (segment-analytics-python) or
RudderStack's (rudder-sdk-python), both from PyPI.

Used by cli/tests/route.rs, which checks which destination each messageId reached.
Each event's messageId is `<prefix>-<case>`; the cases are the ones the test expects.
"""
import argparse
import sys

CASES = {
    # No integrations object: every destination.
    "plain": {},
    # Segment's documented forms.
    "only-mixpanel": {"integrations": {"All": False, "Mixpanel": True}},
    "not-mixpanel": {"integrations": {"mixpanel": False}},
    "only-warehouse-options": {"integrations": {"All": False, "Warehouse": {"schema": "web"}}},
    "none": {"integrations": {"All": False}},
    # Consent Management's preferences.
    "consent-analytics": {"context": {"consent": {"categoryPreferences": {"analytics": True, "advertising": False}}}},
    "consent-all": {"context": {"consent": {"categoryPreferences": {"analytics": True, "advertising": True}}}},
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sdk", choices=["segment", "rudderstack"], required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--write-key", required=True)
    parser.add_argument("--prefix", required=True)
    args = parser.parse_args()
    if args.sdk == "segment":
        from segment.analytics import Client
    else:
        from rudderstack.analytics import Client

    errors = []
    client = Client(
        args.write_key,
        host=args.host,
        on_error=lambda error, batch: errors.append(f"{error} ({len(batch)} events)"),
    )
    for case, extra in CASES.items():
        ok, _ = client.track(
            user_id="u-1",
            event="Order Completed",
            properties={"case": case},
            message_id=f"{args.prefix}-{case}",
            **extra,
        )
        if not ok:
            print(f"{case} was not queued", file=sys.stderr)
            return 1
    client.flush()
    client.shutdown()
    if errors:
        print("upload errors: " + "; ".join(errors), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
