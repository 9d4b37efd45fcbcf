#!/usr/bin/env bash
# Throughput of `pushpark apns bench` against h2load at 1 and at 4 HTTP/2 connections
# (same mock, headers and payload, same run), and the client's peak RSS.
# Each round runs h2load and pushpark alternately at every connection count; prints per
# round both rates, the ratio and each side's CPU per push (the load generator's from
# /usr/bin/time, the mock's from /proc), then per connection count the medians and the
# ratio of the medians (target >= 0.9), and the client's peak RSS (target < 50 MiB).
# In flight: h2load's -m is per connection (-c C -m M keeps C*M streams open), so
# pushpark gets --concurrency C*M over --connections C.
# Env: N (pushes, 50000), M (streams in flight per connection, 100), CONNECTIONS ("1 4"),
# ROUNDS (15: single rounds spread widely on a shared 2-core machine), RSS_N (100000),
# THREADS (client runtime threads, 1), H2LOAD_THREADS (1), MOCK_THREADS (1).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-50000} M=${M:-100} CONNECTIONS=${CONNECTIONS:-1 4} ROUNDS=${ROUNDS:-15} RSS_N=${RSS_N:-100000}
THREADS=${THREADS:-1} H2LOAD_THREADS=${H2LOAD_THREADS:-1} MOCK_THREADS=${MOCK_THREADS:-1}
BIN=target/release/pushpark
cargo build --release --features cli --bin pushpark >&2
command -v h2load >/dev/null || { echo "h2load missing: apt-get install nghttp2-client" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time missing: apt-get install time" >&2; exit 1; }

. bench/mock.sh
start_mock "$BIN" "$state" mock-apns --threads "$MOCK_THREADS"
port=${mock_addr##*:}

token=7b3a1e0f9c2d4b5a6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5
topic=com.example.bench.voip
payload='{"aps":{},"call":{"id":"bench-call","from":"+15550100"}}'
printf '%s' "$payload" >"$state/payload.json"
key=(--key "$state/AuthKey_TESTKEY001.p8" --key-id TESTKEY001 --team-id TESTTEAM01)
jwt=$("$BIN" apns jwt "${key[@]}")
expiration=$(($(date +%s) + 3600))
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); N=$N M=$M rounds=$ROUNDS; threads: client $THREADS, h2load $H2LOAD_THREADS, mock $MOCK_THREADS"

# CPU seconds the mock has used so far.
mock_cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.3f", ($14 + $15) / hz}' "/proc/$mock_pid/stat"; }
# µs of CPU per push from a CPU-seconds difference.
per_push() { awk -v a="$1" -v b="$2" -v n="$N" 'BEGIN{printf "%.1f", (b - a) * 1e6 / n}'; }
# Runs "$@" under /usr/bin/time; its output in $out, its CPU seconds (user+sys) in $cpu.
timed() {
    out=$(/usr/bin/time -f 'cpu_s=%U %S' -o "$state/time" "$@")
    cpu=$(awk '{sub("cpu_s=", ""); print $1 + $2}' "$state/time")
}

h2load_round() { # connections
    timed h2load -n "$N" -c "$1" -m "$M" -t "$H2LOAD_THREADS" -d "$state/payload.json" \
        -H "apns-push-type: voip" -H "apns-topic: $topic" -H "apns-priority: 10" \
        -H "apns-expiration: $expiration" -H "authorization: bearer $jwt" \
        "https://127.0.0.1:$port/3/device/$token"
    grep -q "status codes: $N 2xx" <<<"$out" || { echo "h2load: not all 2xx:" >&2; echo "$out" >&2; exit 1; }
    rate=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
}

ours=("$BIN" apns bench --endpoint "127.0.0.1:$port" --ca "$state/ca.pem" "${key[@]}"
    --topic "$topic" --token "$token" --payload "$payload" --expiration 3600)

ours_round() { # connections
    timed "${ours[@]}" --count "$N" --connections "$1" --concurrency $(($1 * M)) --threads "$THREADS"
    line=$(tail -1 <<<"$out")
    rate=$(sed -n 's/^pushes_per_sec=\([0-9.]*\) .*errors=0$/\1/p' <<<"$line")
    [ -n "$rate" ] || { echo "pushpark bench failed: $line" >&2; exit 1; }
}

median() { sort -g | awk '{v[NR]=$1} END{print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", a/b}'; }
declare -A h2_rates our_rates ratios
for round in $(seq "$ROUNDS"); do
    for c in $CONNECTIONS; do
        m0=$(mock_cpu)
        h2load_round "$c"
        h2=$rate h2_cpu=$cpu m1=$(mock_cpu)
        ours_round "$c"
        m2=$(mock_cpu)
        r=$(ratio "$rate" "$h2")
        echo "round $round, $c conn: h2load=$h2 req/s (h2load $(per_push 0 "$h2_cpu") µs/push, mock $(per_push "$m0" "$m1")) " \
            "pushpark: $line (client $(per_push 0 "$cpu") µs/push, mock $(per_push "$m1" "$m2")) ratio=$r"
        h2_rates[$c]+=" $h2" our_rates[$c]+=" $rate" ratios[$c]+=" $r"
    done
done

rss_kib=$( { /usr/bin/time -v "${ours[@]}" --count "$RSS_N" --concurrency "$M" >/dev/null; } 2>&1 | sed -n 's/.*Maximum resident set size (kbytes): //p')

for c in $CONNECTIONS; do
    med_h2=$(printf '%s\n' ${h2_rates[$c]} | median)
    med_ours=$(printf '%s\n' ${our_rates[$c]} | median)
    echo "connections=$c h2load_req_per_sec=$med_h2 pushpark_pushes_per_sec=$med_ours (medians of $ROUNDS)" \
        "ratio=$(ratio "$med_ours" "$med_h2") (of the medians; target >= 0.9; per round:${ratios[$c]})"
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "peak_rss_kib=$rss_kib for $RSS_N pushes (target < 51200)"
