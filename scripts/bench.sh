#!/usr/bin/env bash
# Ingest benchmark: accepted events/s and latency percentiles for single events and for
# batches of 100 ~1 KB events (acks=all, idempotent producer, real broker: tansu in
# memory), beside a bare actix-web handler measured in the same run.
# Then the router benchmark (router/examples/router_bench.rs) on the same broker,
# end-to-end latency at fixed rates (cli/examples/e2e_bench.rs), the memory of 40,000
# idle actors (scripts/bench/idle_actors.py), the archive (archive/examples/archive_bench.rs)
# the warehouse (warehouse/examples/warehouse_bench.rs) and each native destination kind
# against its local vendor receiver (actors/examples/native_bench.rs).
# Writes target/bench-report.md and target/bench-report.json. Compare ratios within one
# run: this machine is shared.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=$HOME/.cache/switchyard/target}"
DURATION="${BENCH_DURATION:-10s}"
CONNECTIONS="${BENCH_CONNECTIONS:-8}"
WORKERS="${BENCH_WORKERS:-1}"
TANSU="${TANSU_BIN:-$(command -v tansu || echo "$HOME/.cargo/bin/tansu")}"
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing wrk (HTTP load generator)..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  else
    echo "wrk is missing: install it (Debian: apt-get install wrk)" >&2
    exit 1
  fi
fi

# The whole workspace, as the tests build it: building a subset unifies features
# differently and would rebuild half the dependency tree.
cargo build --release --locked --workspace --bins --examples >&2
BIN="$CARGO_TARGET_DIR/release"

work=$(mktemp -d)
pids=()
# Stop in reverse order of start, so ingest never outlives its broker.
cleanup() {
  for ((i=${#pids[@]}-1; i>=0; i--)); do
    kill -INT "${pids[i]}" 2>/dev/null || true
    timeout 10 tail --pid="${pids[i]}" -f /dev/null 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

kafka_port=$(free_port); ingest_port=$(free_port); bare_port=$(free_port)
start_broker() {
  (cd "$work" && exec "$TANSU" broker --listener-url "tcp://127.0.0.1:$kafka_port" \
     --advertised-listener-url "tcp://127.0.0.1:$kafka_port" --storage-engine memory://tansu/ >/dev/null 2>&1) &
  broker_pid=$!
  pids+=($broker_pid)
}
start_broker
wait_port "$kafka_port"
"$BIN/switchyard" create-topic --kafka-brokers "127.0.0.1:$kafka_port" --topic bench --partitions 4 >&2

key="bench-write-key-0123456789"
cat > "$work/switchyard.toml" <<TOML
[kafka]
brokers = "127.0.0.1:$kafka_port"
topic = "bench"

[ingest]
listen = "127.0.0.1:$ingest_port"
allow_plain_http = true
workers = $WORKERS

[[sources]]
id = "bench"
write_key = "$key"
TOML
RUST_LOG=warn "$BIN/switchyard" ingest --config "$work/switchyard.toml" >/dev/null &
ingest_pid=$!
pids+=($ingest_pid)
"$BIN/examples/bare_server" "127.0.0.1:$bare_port" "$WORKERS" &
bare_pid=$!
pids+=($bare_pid)
wait_port "$ingest_port"; wait_port "$bare_port"

event_bytes=$(python3 scripts/bench/make_bodies.py "$work")
export BENCH_AUTH=$(printf '%s:' "$key" | base64 -w0)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run NAME URL BODY EVENTS_PER_REQUEST PID -> "events/s p50 p99 events-per-cpu-second"
run() {
  local out before after
  before=$(cpu_ticks "$5")
  out=$(BENCH_BODY="$3" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s scripts/bench/post.lua "$2" 2>"$work/$1.err")
  after=$(cpu_ticks "$5")
  echo "$out" > "$work/$1.out"
  if grep -q "non-200" "$work/$1.err"; then echo "$1: the server refused requests:" >&2; cat "$work/$1.err" >&2; exit 1; fi
  local rps p50 p99
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  local seconds=${DURATION%s} hz
  hz=$(getconf CLK_TCK)
  printf '%s %s %s %s %s\n' "$(python3 -c "print(round($rps * $4))")" "$p50" "$p99" \
    "$(python3 -c "print(round(($after - $before) / $hz / $seconds, 2))")" \
    "$(python3 -c "t = ($after - $before) / $hz; print(round($rps * $4 * $seconds / t) if t else 0)")"
}

# Warm up the producer's connections and the JIT-free paths once.
BENCH_BODY="$work/batch.json" wrk -t1 -c4 -d2s -s scripts/bench/post.lua "http://127.0.0.1:$ingest_port/v1/batch" >/dev/null 2>&1

read -r bare_batch_eps bare_batch_p50 bare_batch_p99 bare_batch_cores bare_batch_eff < <(run bare-batch "http://127.0.0.1:$bare_port/v1/batch" "$work/batch.json" 100 "$bare_pid")
read -r batch_eps batch_p50 batch_p99 batch_cores batch_eff < <(run ingest-batch "http://127.0.0.1:$ingest_port/v1/batch" "$work/batch.json" 100 "$ingest_pid")
read -r bare_single_eps bare_single_p50 bare_single_p99 bare_single_cores bare_single_eff < <(run bare-single "http://127.0.0.1:$bare_port/v1/track" "$work/single.json" 1 "$bare_pid")
read -r single_eps single_p50 single_p99 single_cores single_eff < <(run ingest-single "http://127.0.0.1:$ingest_port/v1/track" "$work/single.json" 1 "$ingest_pid")
for figure in bare_batch_eps batch_eps bare_single_eps single_eps; do
  [ -n "${!figure}" ] || { echo "benchmark run $figure failed" >&2; exit 1; }
done

# The broker alone: a bare rdkafka producer with ingest's settings, same records.
python3 -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1]))['batch'][0]))" "$work/batch.json" > "$work/one.json"
read -r producer_eps producer_p50 producer_p99 < <("$BIN/examples/bare_producer" "127.0.0.1:$kafka_port" bench 300000 "$work/one.json")

# The router: a pre-filled topic through the router to a no-op (blackhole) destination
# and to a fast local webhook, beside a bare consumer of the same topic.
ROUTER_RECORDS="${BENCH_ROUTER_RECORDS:-200000}"
router_out=$(RUST_LOG=warn "$BIN/examples/router_bench" "127.0.0.1:$kafka_port" "$ROUTER_RECORDS")
read -r _ consumer_eps consumer_cpu _ < <(grep '^bare-consumer ' <<<"$router_out")
read -r _ blackhole_eps blackhole_cpu _ < <(grep '^router-blackhole ' <<<"$router_out")
read -r _ webhook_eps webhook_cpu _ < <(grep '^router-webhook ' <<<"$router_out")
for figure in consumer_eps blackhole_eps webhook_eps; do
  [ -n "${!figure}" ] || { echo "router benchmark failed: $router_out" >&2; exit 1; }
done
per_cpu() { python3 -c "print(round($ROUTER_RECORDS / $1) if $1 > 0 else 'n/a')"; }

# End to end: HTTP in → Kafka → router → webhook received, at fixed rates, beside the
# same requests sent straight to the receiver (one HTTP hop). Before the archive and
# warehouse runs: latency is measured on a quiet machine, not beside a Postgres that is
# still checkpointing the warehouse's load.
# On a fresh broker: the first one holds every record of the runs above in memory, and
# the latency of a path is measured, not that of a broker carrying them.
kill -INT "$broker_pid" 2>/dev/null || true
timeout 10 tail --pid="$broker_pid" -f /dev/null 2>/dev/null || true
kafka_port=$(free_port)
start_broker
wait_port "$kafka_port"
for t in e2e:4 e2e.retry:2 e2e.dead:1; do
  "$BIN/switchyard" create-topic --kafka-brokers "127.0.0.1:$kafka_port" --topic "${t%:*}" --partitions "${t#*:}" >&2
done
# The ingest of the first runs is done: stop it so the end-to-end run has the cores.
kill -INT "$ingest_pid" "$bare_pid" 2>/dev/null || true
E2E_SECONDS="${BENCH_E2E_SECONDS:-10}"
e2e_rows=""
e2e_json=""
# e2e_run NAME BROKER_LABEL BROKERS RATE...: Switchyard (`run`) on BROKERS, the load at each
# rate, one table row and one JSON entry per rate; sets e2e_p99_NAME_RATE for the targets.
e2e_run() {
  local name=$1 label=$2 brokers=$3; shift 3
  local ingest_port hook_port ops_port run_pid out
  ingest_port=$(free_port); hook_port=$(free_port); ops_port=$(free_port)
  cat > "$work/e2e-$name.toml" <<TOML
[kafka]
brokers = "$brokers"
topic = "e2e"

[ops]
listen = "127.0.0.1:$ops_port"

[ingest]
listen = "127.0.0.1:$ingest_port"
allow_plain_http = true

[egress]
allow = ["127.0.0.0/8"]
allow_plain_http_hosts = ["127.0.0.1"]

[router]
group_id = "e2e-bench"
dead_letter_topic = "e2e.dead"
retry_topic = "e2e.retry"

[[sources]]
id = "e2e"
write_key = "$key"

[[destinations]]
id = "hook"
sources = ["e2e"]
kind = "webhook"
url = "http://127.0.0.1:$hook_port/hook"
batch_max_events = 100
concurrency = 8
TOML
  RUST_LOG=warn "$BIN/switchyard" run --config "$work/e2e-$name.toml" >/dev/null &
  run_pid=$!
  pids+=($run_pid)
  wait_port "$ingest_port"
  out=$("$BIN/examples/e2e_bench" "http://127.0.0.1:$ingest_port" "$key" "$hook_port" "$E2E_SECONDS" "$@")
  kill -INT "$run_pid" 2>/dev/null || true
  timeout 20 tail --pid="$run_pid" -f /dev/null 2>/dev/null || true
  local rate bare_ach bare_p50 bare_p99 bare_p999 bare_lost e2e_ach e2e_p50 e2e_p99 e2e_p999 e2e_lost e2e_failed ack_p50 ack_p99
  for rate in "$@"; do
    read -r _ _ bare_ach bare_p50 bare_p99 bare_p999 bare_lost _ < <(grep "^bare $rate " <<<"$out")
    read -r _ _ e2e_ach e2e_p50 e2e_p99 e2e_p999 e2e_lost e2e_failed ack_p50 ack_p99 < <(grep "^e2e $rate " <<<"$out")
    [ -n "$e2e_p99" ] || { echo "end-to-end benchmark ($name) failed: $out" >&2; exit 1; }
    e2e_rows+="| $label | $rate | $e2e_ach | $e2e_p50 | $e2e_p99 | $e2e_p999 | $e2e_lost | $ack_p50 | $ack_p99 | $bare_p50 | $bare_p99 |"$'\n'
    e2e_json+="(\"$name\", $rate, $e2e_ach, $e2e_p50, $e2e_p99, $bare_p99),"
    printf -v "e2e_p99_${name}_$rate" '%s' "$e2e_p99"
  done
}
e2e_run tansu "tansu 0.6 (memory)" "127.0.0.1:$kafka_port" 1000 10000 50000
# The same path on librdkafka's mock cluster (`switchyard local-broker`, in memory), which
# answers a fetch as soon as records arrive, as Kafka does: the router's hop without
# tansu's held fetches. Its own produce path tops out below 50k events/s here.
"$BIN/switchyard" local-broker --topic e2e:4 --topic e2e.retry:2 --topic e2e.dead:1 \
  --address-file "$work/mock.address" >/dev/null 2>&1 &
mock_pid=$!
pids+=($mock_pid)
for _ in $(seq 100); do [ -s "$work/mock.address" ] && break; sleep 0.1; done
e2e_run mock_cluster "librdkafka mock cluster" "$(cat "$work/mock.address")" 1000 10000
kill -INT "$mock_pid" 2>/dev/null || true

# Idle actors: a router holding 10,000 sources x 3 destinations, beside one with 1 x 1.
IDLE_SOURCES="${BENCH_IDLE_SOURCES:-10000}"
read -r _ _ _ idle_actors idle_rss idle_base_rss < <(python3 scripts/bench/idle_actors.py "$BIN/switchyard" "127.0.0.1:$kafka_port" "$IDLE_SOURCES" 3)
[ -n "$idle_rss" ] || { echo "idle actors benchmark failed" >&2; exit 1; }

# The archive: JSON lines sealed (zstd, age) into 64 MiB objects and written locally.
read -r _ archive_mbps archive_cpu archive_mb archive_sealed_mb < <("$BIN/examples/archive_bench" 512 64)
[ -n "$archive_mbps" ] || { echo "archive benchmark failed" >&2; exit 1; }

# The warehouse: ~1 KB track events loaded into the local Postgres (a fresh database),
# beside a bare COPY of the same rows.
WAREHOUSE_EVENTS="${BENCH_WAREHOUSE_EVENTS:-200000}"
warehouse_out=$("$BIN/examples/warehouse_bench" "$WAREHOUSE_EVENTS" 5000 2)
read -r _ warehouse_eps warehouse_rps warehouse_p50 warehouse_p99 warehouse_cpu < <(grep '^warehouse ' <<<"$warehouse_out")
read -r _ bare_copy_rps < <(grep '^bare-copy ' <<<"$warehouse_out")
[ -n "$warehouse_eps" ] && [ -n "$bare_copy_rps" ] || { echo "warehouse benchmark failed: $warehouse_out" >&2; exit 1; }

# Native destinations: each kind's client against its local vendor receiver.
NATIVE_EVENTS="${BENCH_NATIVE_EVENTS:-50000}"
native_out=$("$BIN/examples/native_bench" "$NATIVE_EVENTS" 2)
native_rows=$(awk '/^native /{printf "| %s | %s | %s | %s | %s |\n", $2, $3, $4, $5, $6}' <<<"$native_out")
[ -n "$native_rows" ] || { echo "native destinations benchmark failed: $native_out" >&2; exit 1; }

ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
mkdir -p target
# Each target of the issues beside this run's figure, with a verdict, so the report says
# at a glance what this machine met. One row per line: name|figure|target|met or not met.
targets=$(python3 - <<PY
def per(amount, seconds):
    return amount / seconds if seconds > 0 else None  # too short for the CPU clock
def row(name, figure, unit, limit, at_least):
    if figure is None:
        verdict, shown = "not measured", "n/a"
    else:
        verdict = "met" if (figure >= limit if at_least else figure < limit) else "not met"
        shown = f"{figure:,.0f}" if figure >= 100 else f"{figure:.2f}"
    print(f"{name}|{shown} {unit}|{'≥' if at_least else '<'} {limit:,} {unit}|{verdict}")
row("ingest: batched events per CPU-second", $batch_eff, "ev/CPU-s", 50000, True)
row("router → one webhook destination vs bare consumer", $webhook_eps / $consumer_eps, "×", 0.5, True)
row("router no-op path: events per CPU-second", per($ROUTER_RECORDS, $blackhole_cpu), "ev/CPU-s", 100000, True)
row("archive: MB per CPU-second", per($archive_mb, $archive_cpu), "MB/CPU-s", 300, True)
row("warehouse: rows/s", $warehouse_rps, "rows/s", 50000, True)
row("end to end p99 at 10,000 ev/s, tansu", $e2e_p99_tansu_10000, "ms", 50, False)
row("end to end p99 at 10,000 ev/s, mock cluster", $e2e_p99_mock_cluster_10000, "ms", 50, False)
row("40,000 idle actors: resident memory", $idle_rss, "MiB", 256, False)
PY
)
report=target/bench-report.md
{
  echo "# Switchyard benchmark report ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  echo
  echo "$(nproc) cores; ingest and baseline with $WORKERS HTTP worker(s); wrk 1 thread, $CONNECTIONS connections, $DURATION each;"
  echo "events of $event_bytes bytes; broker: tansu (memory storage) on the same machine; acks=all, idempotent producer."
  echo
  echo "## Targets"
  echo
  echo "| target | this run | target | verdict |"
  echo "|---|---:|---:|---|"
  while IFS='|' read -r name figure limit verdict; do
    [ "$verdict" = met ] || verdict="**$verdict**"
    echo "| $name | $figure | $limit | $verdict |"
  done <<<"$targets"
  echo
  echo "## Ingest"
  echo
  echo "| case | events/s | p50 | p99 | server CPU (cores) | events per CPU-second | events/s vs baseline |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  echo "| bare actix-web handler, batch of 100 | $bare_batch_eps | $bare_batch_p50 | $bare_batch_p99 | $bare_batch_cores | $bare_batch_eff | 1.00 |"
  echo "| bare rdkafka producer, 1,000 in flight | $producer_eps | $producer_p50 | $producer_p99 | | | 1.00 |"
  echo "| **ingest, batch of 100** | $batch_eps | $batch_p50 | $batch_p99 | $batch_cores | $batch_eff | $(ratio "$batch_eps" "$producer_eps") of the producer |"
  echo "| bare actix-web handler, single event | $bare_single_eps | $bare_single_p50 | $bare_single_p99 | $bare_single_cores | $bare_single_eff | 1.00 |"
  echo "| ingest, single event | $single_eps | $single_p50 | $single_p99 | $single_cores | $single_eff | $(ratio "$single_eps" "$bare_single_eps") of the handler |"
  echo
  echo "Latency is per HTTP request (a batch request covers 100 events) and includes Kafka's acks=all."
  echo "\"events per CPU-second\" divides events/s by the server process's CPU use (user + system, all"
  echo "threads including librdkafka's): the per-core figure. Target: at least 50,000 batched events/s per core."
  echo
  echo "## Router ($ROUTER_RECORDS records of ~900 bytes, 4 partitions, one source transform: redact context.userAgent)"
  echo
  echo "| case | events/s | process CPU-seconds | events per CPU-second | vs bare consumer |"
  echo "|---|---:|---:|---:|---:|"
  echo "| bare rdkafka consumer | $consumer_eps | $consumer_cpu | $(per_cpu "$consumer_cpu") | 1.00 |"
  echo "| router → blackhole (no-op) destination | $blackhole_eps | $blackhole_cpu | $(per_cpu "$blackhole_cpu") | $(ratio "$blackhole_eps" "$consumer_eps") |"
  echo "| router → local webhook (batches of 100, signed) | $webhook_eps | $webhook_cpu | $(per_cpu "$webhook_cpu") | $(ratio "$webhook_eps" "$consumer_eps") |"
  echo
  echo "The router figures count from the first record read to the last one finished; the webhook"
  echo "case's CPU includes the in-process receiver. Targets: at least 0.5 of the bare consumer with one"
  echo "destination, and 100,000 events per CPU-second on the no-op path."
  echo
  echo "## Archive (${archive_mb} MB of ~950-byte JSON events with random ids, 64 MiB objects)"
  echo
  echo "| case | MB/s | process CPU-seconds | MB per CPU-second | stored MB |"
  echo "|---|---:|---:|---:|---:|"
  echo "| zstd (level 1) + age (X25519) + local object store | $archive_mbps | $archive_cpu | $(python3 -c "print(round($archive_mb / $archive_cpu) if $archive_cpu > 0 else 'n/a')") | $archive_sealed_mb |"
  echo
  echo "Target: at least 300 MB per CPU-second."
  echo
  echo "## Warehouse ($WAREHOUSE_EVENTS track events of ~1 KB, batches of 5,000, 2 loads at once, local Postgres)"
  echo
  echo "| case | events/s | rows/s | batch p50 (ms) | batch p99 (ms) | loader CPU-seconds | vs bare COPY |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  echo "| bare COPY of the event table's rows | | $bare_copy_rps | | | | 1.00 |"
  echo "| warehouse loader (tracks + order_completed rows) | $warehouse_eps | $warehouse_rps | $warehouse_p50 | $warehouse_p99 | $warehouse_cpu | $(ratio "$warehouse_rps" "$bare_copy_rps") |"
  echo
  echo "Each event is two rows (tracks and its event's table), COPYed in one transaction per batch"
  echo "(ids are looked up only when the primary key finds some already there). Postgres runs on the"
  echo "same two cores. Target: at least 50,000 rows/s."
  echo
  echo "## Native destinations ($NATIVE_EVENTS track events of ~1 KB, each kind's batching, 2 requests in flight)"
  echo
  echo "| kind | events/s | events per client CPU-second | request p50 (ms) | request p99 (ms) |"
  echo "|---|---:|---:|---:|---:|"
  echo "$native_rows"
  echo
  echo "Each kind's client sends to a local receiver that checks every request as its vendor documents"
  echo "(testkit/src/vendors/); CPU is the client's own thread's (mapping, encoding, HTTP, answers)."
  echo
  echo "## End to end (HTTP POST to ingest → Kafka → router → webhook received, batches at 200 requests/s, ${E2E_SECONDS}s per rate)"
  echo
  echo "| broker | target events/s | achieved | p50 (ms) | p99 (ms) | p99.9 (ms) | not received 15 s after the last send | ingest answer p50 (ms) | ingest answer p99 (ms) | bare HTTP hop p50 (ms) | bare p99 (ms) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s' "$e2e_rows"
  echo
  echo "Latency runs from just before a batch is sent to when the receiver has it; the bare columns"
  echo "send the same batches straight to the receiver; the ingest answer columns time each request to"
  echo "its 200 (Kafka acknowledged), so the rest is the Kafka hop, the router and the webhook. tansu"
  echo "holds every fetch for the consumer's whole fetch.wait.max.ms (5 ms) and answers with what it"
  echo "had when the fetch came, and its fetches cost more as its memory store grows; librdkafka's mock"
  echo "cluster answers as soon as records arrive, as Kafka does. Each broker is fresh for its run."
  echo "Everything (broker, ingest, router, load generator, receiver) shares the same cores."
  echo "Target: p99 under 50 ms at 10,000 events/s."
  echo
  echo "## Idle actors"
  echo
  echo "| router | actors | resident memory (MiB) |"
  echo "|---|---:|---:|"
  echo "| 1 source x 1 destination (baseline) | 2 | $idle_base_rss |"
  echo "| $IDLE_SOURCES sources x 3 webhook destinations | $idle_actors | $idle_rss |"
  echo
  echo "Target: 40,000 idle actors in under 256 MiB."
} > "$report"
cat "$report"

# The same figures for machines.
python3 - "$report" <<PY
import json, sys
figures = {
    "ingest": {"batch_events_per_sec": $batch_eps, "batch_p50": "$batch_p50", "batch_p99": "$batch_p99",
               "batch_events_per_cpu_second": $batch_eff, "bare_producer_events_per_sec": $producer_eps,
               "single_events_per_sec": $single_eps, "bare_handler_single_events_per_sec": $bare_single_eps},
    "router": {"bare_consumer_events_per_sec": $consumer_eps, "blackhole_events_per_sec": $blackhole_eps,
               "webhook_events_per_sec": $webhook_eps},
    "archive": {"mb_per_sec": $archive_mbps},
    "warehouse": {"rows_per_sec": $warehouse_rps, "bare_copy_rows_per_sec": $bare_copy_rps,
                  "batch_p50_ms": $warehouse_p50, "batch_p99_ms": $warehouse_p99},
    "end_to_end": {},
    "targets": [dict(zip(("target", "figure", "limit", "verdict"), line.split("|")))
                for line in """$targets""".splitlines()],
    "idle_actors": {"sources": $IDLE_SOURCES, "actors": $idle_actors, "rss_mib": $idle_rss,
                    "baseline_rss_mib": $idle_base_rss},
}
for broker, rate, ach, p50, p99, bare in [$e2e_json]:
    figures["end_to_end"].setdefault(broker, {})[str(rate)] = {"achieved": ach, "p50_ms": p50, "p99_ms": p99,
                                                               "bare_p99_ms": bare}
json.dump(figures, open(sys.argv[1].replace(".md", ".json"), "w"), indent=2)
PY
