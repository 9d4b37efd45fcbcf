#!/usr/bin/env bash
# Throughput of `pushpark fcm bench` against the mock FCM beside, in the same run and on one
# HTTP/2 connection each: h2load sending the same FCM request (same body and bearer),
# `pushpark apns bench` against the mock APNs (same count and concurrency), and the
# firebase-admin Python SDK's send_each_async (bench/fcm_sdk.py; a venv under target/).
# Rounds interleave the four; prints each round's rates and ratios, then the medians.
# Env: N (messages, 20000), M (streams in flight, 100), ROUNDS (5), SDK_N (messages for the
# SDK, 5000), SDK_BATCH (messages per send_each_async call, 500: its maximum), SDK=0 skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20000} M=${M:-100} ROUNDS=${ROUNDS:-5} SDK=${SDK:-1} SDK_N=${SDK_N:-5000}
SDK_BATCH=${SDK_BATCH:-500}
BIN=target/release/pushpark
cargo build --release --features cli --bin pushpark >&2
command -v h2load >/dev/null || { echo "h2load missing: apt-get install nghttp2-client" >&2; exit 1; }
venv=target/fcm-sdk-venv
if [ "$SDK" = 1 ] && ! "$venv/bin/python" -c 'import firebase_admin' 2>/dev/null; then
    # The version whose behaviour docs/performance.md describes.
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q firebase-admin==7.7.0 >&2
fi

. bench/mock.sh
mkdir "$state/fcm" "$state/apns"
start_mock "$BIN" "$state/fcm" mock-fcm
fcm_endpoint=$mock_addr
start_mock "$BIN" "$state/apns" mock-apns
apns_endpoint=$mock_addr

account=$state/fcm/service-account.json
project=$(sed -n 's/^ *"project_id": *"\([^"]*\)".*/\1/p' "$account")
registration=eH0fLhuiRj2Np7UQ-opXAm:APA91bGtC-wH4sgW1jWkMKIZf7FYkm_RTQb7Jid7DfSJnC
# `fcm bench`'s own body (timeout 30).
printf '{"message":{"token":"%s","data":{"pushpark":"test"},"android":{"priority":"HIGH","ttl":"30s"}}}' \
    "$registration" >"$state/body.json"
# A credential: kept in this process's memory, never printed.
authorization=$("$BIN" fcm token --service-account "$account" --ca "$state/fcm/ca.pem")

h2load_rate() {
    local out
    out=$(h2load -n "$N" -c 1 -m "$M" -d "$state/body.json" -H "content-type: application/json" \
        -H "authorization: $authorization" "https://$fcm_endpoint/v1/projects/$project/messages:send")
    grep -q "status codes: $N 2xx" <<<"$out" || { echo "h2load: not all 2xx:" >&2; echo "$out" >&2; exit 1; }
    sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out"
}

fcm_bench() {
    "$BIN" fcm bench --service-account "$account" --token "$registration" \
        --endpoint "$fcm_endpoint" --ca "$state/fcm/ca.pem" --count "$N" --concurrency "$M" | tail -1
}

apns_bench() {
    "$BIN" apns bench --endpoint "$apns_endpoint" --ca "$state/apns/ca.pem" \
        --key "$state/apns/AuthKey_TESTKEY001.p8" --key-id TESTKEY001 --team-id TESTTEAM01 \
        --topic com.example.bench.voip --token 7b3a1e0f9c2d4b5a6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5 \
        --payload '{"aps":{},"call":{"id":"bench-call","from":"+15550100"}}' --expiration 3600 \
        --count "$N" --concurrency "$M" | tail -1
}

sdk_rate() {
    local out
    out=$(FCM_AUTHORIZATION=$authorization SSL_CERT_FILE=$state/fcm/ca.pem \
        "$venv/bin/python" bench/fcm_sdk.py "$project" "$fcm_endpoint" "$registration" "$SDK_N" "$SDK_BATCH")
    sed -n 's/^messages_per_sec=\([0-9.]*\) errors=0$/\1/p' <<<"$out" | grep . ||
        { echo "firebase-admin failed: $out" >&2; exit 1; }
}

# rate LINE: the pushes/s of a bench's last line, which must report no error.
rate() {
    sed -n 's/^pushes_per_sec=\([0-9.]*\) .*errors=0$/\1/p' <<<"$1" | grep . ||
        { echo "bench failed: $1" >&2; exit 1; }
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", a/b}'; }
median() { sort -g | awk '{v[NR]=$1} END{print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

echo "$(date -u +%FT%TZ) N=$N M=$M rounds=$ROUNDS load average: $(cut -d' ' -f1-3 /proc/loadavg)"
fcm=() apns=() h2=() sdk=()
for round in $(seq "$ROUNDS"); do
    h=$(h2load_rate)
    f_line=$(fcm_bench)
    f=$(rate "$f_line")
    a_line=$(apns_bench)
    a=$(rate "$a_line")
    s=-
    [ "$SDK" = 1 ] && s=$(sdk_rate)
    echo "round $round: fcm bench: $f_line | apns bench: $a_line | h2load=$h | firebase-admin=$s" \
        "| fcm/h2load=$(ratio "$f" "$h") fcm/apns=$(ratio "$f" "$a")" \
        "$([ "$SDK" = 1 ] && echo "fcm/firebase-admin=$(ratio "$f" "$s")")"
    fcm+=("$f") apns+=("$a") h2+=("$h") sdk+=("$s")
done
med() { printf '%s\n' "$@" | median; }
m_f=$(med "${fcm[@]}") m_a=$(med "${apns[@]}") m_h=$(med "${h2[@]}")
printf '%-26s %12s %10s\n' client "median msg/s" "fcm bench/"
printf '%-26s %12s %10s\n' "pushpark fcm bench" "$m_f" 1
printf '%-26s %12s %10s\n' "h2load (same request)" "$m_h" "$(ratio "$m_f" "$m_h")"
printf '%-26s %12s %10s\n' "pushpark apns bench" "$m_a" "$(ratio "$m_f" "$m_a")"
if [ "$SDK" = 1 ]; then
    m_s=$(med "${sdk[@]}")
    printf '%-26s %12s %10s\n' "firebase-admin 7.7.0" "$m_s" "$(ratio "$m_f" "$m_s")"
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
