#!/usr/bin/env bash
# Throughput of `pushpark apns bench` against h2load on one HTTP/2 connection
# (same mock, headers and payload, same run), and the client's peak RSS.
# Prints both rates per round and their medians, the ratio of the medians (target >= 0.9)
# and the client's peak RSS (target < 50 MiB).
# Env: N (pushes, 50000), M (streams in flight, 100), ROUNDS (3), RSS_N (100000).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-50000} M=${M:-100} ROUNDS=${ROUNDS:-3} RSS_N=${RSS_N:-100000}
BIN=target/release/pushpark
cargo build --release --features cli --bin pushpark >&2
command -v h2load >/dev/null || { echo "h2load missing: apt-get install nghttp2-client" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time missing: apt-get install time" >&2; exit 1; }

. bench/mock.sh
start_mock "$BIN" "$state"
port=${mock_addr##*:}

token=7b3a1e0f9c2d4b5a6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5
topic=com.example.bench.voip
payload='{"aps":{},"call":{"id":"bench-call","from":"+15550100"}}'
printf '%s' "$payload" >"$state/payload.json"
key=(--key "$state/AuthKey_TESTKEY001.p8" --key-id TESTKEY001 --team-id TESTTEAM01)
jwt=$("$BIN" apns jwt "${key[@]}")
expiration=$(($(date +%s) + 3600))

h2load_rate() {
    local out
    out=$(h2load -n "$N" -c 1 -m "$M" -d "$state/payload.json" \
        -H "apns-push-type: voip" -H "apns-topic: $topic" -H "apns-priority: 10" \
        -H "apns-expiration: $expiration" -H "authorization: bearer $jwt" \
        "https://127.0.0.1:$port/3/device/$token")
    grep -q "status codes: $N 2xx" <<<"$out" || { echo "h2load: not all 2xx:" >&2; echo "$out" >&2; exit 1; }
    sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out"
}

ours() {
    "$BIN" apns bench --endpoint "127.0.0.1:$port" --ca "$state/ca.pem" "${key[@]}" \
        --topic "$topic" --token "$token" --payload "$payload" --expiration 3600 \
        --count "$1" --concurrency "$M"
}

median() { sort -g | awk '{v[NR]=$1} END{print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
h2_rates=() our_rates=()
for round in $(seq "$ROUNDS"); do
    h2=$(h2load_rate)
    line=$(ours "$N" | tail -1)
    rate=$(sed -n 's/^pushes_per_sec=\([0-9.]*\) .*errors=0$/\1/p' <<<"$line")
    [ -n "$rate" ] || { echo "pushpark bench failed: $line" >&2; exit 1; }
    echo "round $round: h2load=$h2 req/s pushpark: $line ratio=$(awk -v a="$rate" -v b="$h2" 'BEGIN{printf "%.3f", a/b}')"
    h2_rates+=("$h2") our_rates+=("$rate")
done
med_h2=$(printf '%s\n' "${h2_rates[@]}" | median)
med_ours=$(printf '%s\n' "${our_rates[@]}" | median)

rss_kib=$( { /usr/bin/time -v "$BIN" apns bench --endpoint "127.0.0.1:$port" --ca "$state/ca.pem" \
    "${key[@]}" --topic "$topic" --token "$token" --payload "$payload" --expiration 3600 \
    --count "$RSS_N" --concurrency "$M" >/dev/null; } 2>&1 | sed -n 's/.*Maximum resident set size (kbytes): //p')

echo "h2load_req_per_sec=$med_h2 (median of $ROUNDS)"
echo "pushpark_pushes_per_sec=$med_ours (median of $ROUNDS)"
echo "ratio=$(awk -v a="$med_ours" -v b="$med_h2" 'BEGIN{printf "%.3f", a/b}') (of the medians; target >= 0.9)"
echo "peak_rss_kib=$rss_kib for $RSS_N pushes (target < 51200)"
