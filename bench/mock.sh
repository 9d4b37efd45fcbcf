# Sourced by the benchmarks: a scratch dir $state removed on exit, and start_mock.

state=$(mktemp -d)
mock_pids=()
cleanup() {
    for pid in "${mock_pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    rm -rf "$state"
}
trap cleanup EXIT

# start_mock BIN DIR [KIND [ARGS...]]: runs `BIN KIND ARGS` (KIND mock-apns, the default, or
# mock-fcm) on a free loopback port with state dir DIR; sets mock_addr and mock_pid.
start_mock() {
    local kind=${3:-mock-apns}
    "$1" "$kind" --listen 127.0.0.1:0 --state-dir "$2" "${@:4}" >"$state/$kind.out" &
    mock_pid=$!
    mock_pids+=("$mock_pid")
    for _ in $(seq 100); do grep -qs '^listening on ' "$state/$kind.out" && break; sleep 0.1; done
    mock_addr=$(sed -n 's/^listening on //p' "$state/$kind.out")
    [ -n "$mock_addr" ] || { echo "the $kind did not start" >&2; exit 1; }
}
