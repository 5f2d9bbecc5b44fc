#!/usr/bin/env python3
"""Kafka round trip as a platform engineer does it, with the confluent-kafka client:
produce chat events (JSON lines) to the events topic, keyed by pair, then read the
alerts pairwatch produces back from the alerts topic.

    python3 scripts/kafka_roundtrip.py --brokers 127.0.0.1:9092 examples/sextortion_fr.jsonl

Exits 0 once an alert of --expect priority (default P0) has been read (its id printed as
ALERT_ID=...), 1 on timeout. --lines A-B produces those lines only. With --expect-update
KIND it waits for an update of that kind instead, and fails if a new alert of
--forbid-pattern other than --except-id comes first (a false positive must hold).
"""
import argparse
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer


def pair_key(event):
    """The message key pairwatch expects: tenant/min(user)/max(user)."""
    tenant = event.get("tenant") or "default"
    a = event["sender"]["user_id"]
    b = event["recipient"]["user_id"]
    lo, hi = sorted([a, b])
    return f"{tenant}/{lo}/{hi}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--events-topic", default="pairwatch.events")
    ap.add_argument("--alerts-topic", default="pairwatch.alerts")
    ap.add_argument("--expect", default="P0")
    ap.add_argument("--timeout", type=float, default=90.0)
    ap.add_argument("--lines", help="A-B: produce lines A to B (from 1) only")
    ap.add_argument("--expect-update", help="wait for an alert update of this kind")
    ap.add_argument("--forbid-pattern", help="a new alert of this pattern is a failure")
    ap.add_argument("--except-id", default="", help="the one alert of that pattern allowed")
    ap.add_argument("events", help="JSON lines, one event per line")
    args = ap.parse_args()

    producer = Producer({"bootstrap.servers": args.brokers, "enable.idempotence": True})
    failed = []

    def delivered(err, _msg):
        if err is not None:
            failed.append(err)

    first, last = 1, None
    if args.lines:
        a, b = args.lines.split("-")
        first, last = int(a), int(b)
    sent = 0
    with open(args.events, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip() or number < first or (last is not None and number > last):
                continue
            event = json.loads(line)
            producer.produce(
                args.events_topic,
                key=pair_key(event),
                value=line.strip().encode("utf-8"),
                headers={"content-type": "application/json"},
                on_delivery=delivered,
            )
            sent += 1
    producer.flush(30)
    if failed:
        print(f"{len(failed)} events not delivered: {failed[0]}", file=sys.stderr)
        return 1
    print(f"produced {sent} events to {args.events_topic}")

    consumer = Consumer(
        {
            "bootstrap.servers": args.brokers,
            "group.id": f"roundtrip-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([args.alerts_topic])
    deadline = time.time() + args.timeout
    try:
        while time.time() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            alert = json.loads(msg.value())
            headers = dict((k, v.decode()) for k, v in (msg.headers() or []))
            print(
                f"alert {alert['alert_id']} {alert['priority']} {alert['pattern']} "
                f"key={msg.key().decode()} respond_by={alert.get('respond_by', '-')} "
                f"header-priority={headers.get('pairwatch-priority')}"
            )
            update = (alert.get("update") or {}).get("kind")
            if args.expect_update:
                if update == args.expect_update:
                    return 0
                if (
                    update is None
                    and alert["pattern"] == args.forbid_pattern
                    and alert["alert_id"] != args.except_id
                ):
                    print(f"a new {args.forbid_pattern} alert came: {alert['alert_id']}", file=sys.stderr)
                    return 1
            elif alert["priority"] == args.expect:
                print(f"ALERT_ID={alert['alert_id']}")
                return 0
    finally:
        consumer.close()
    wanted = f"{args.expect_update} update" if args.expect_update else f"{args.expect} alert"
    print(f"no {wanted} within {args.timeout}s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
