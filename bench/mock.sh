# Sourced by the benchmarks: a scratch dir $state removed on exit, and start_mock.

state=$(mktemp -d)
mock_pid=
cleanup() { [ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null && wait "$mock_pid" 2>/dev/null; rm -rf "$state"; }
trap cleanup EXIT

# start_mock BIN DIR [ARGS...]: runs `BIN mock-apns ARGS` on a free loopback port with state
# dir DIR; sets mock_addr.
start_mock() {
    "$1" mock-apns --listen 127.0.0.1:0 --state-dir "$2" "${@:3}" >"$state/mock.out" &
    mock_pid=$!
    for _ in $(seq 100); do grep -qs '^listening on ' "$state/mock.out" && break; sleep 0.1; done
    mock_addr=$(sed -n 's/^listening on //p' "$state/mock.out")
    [ -n "$mock_addr" ] || { echo "the mock did not start" >&2; exit 1; }
}
