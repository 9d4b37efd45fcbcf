#!/usr/bin/env bash
# Engine figures through the C ABI (bench/c_abi.c): cost per park+wake cycle, REGISTER ->
# RESUME latency seen by an event loop polling the event fd, memory per parked call.
# Release build, against `pushpark mock-apns` on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --lib --bin pushpark >&2
lib=$PWD/target/release

state=$(mktemp -d)
mock_pid=
cleanup() { [ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null && wait "$mock_pid" 2>/dev/null; rm -rf "$state"; }
trap cleanup EXIT
"$lib/pushpark" mock-apns --listen 127.0.0.1:0 --state-dir "$state/mock" >"$state/mock.out" &
mock_pid=$!
for _ in $(seq 100); do grep -q '^listening on ' "$state/mock.out" && break; sleep 0.1; done
addr=$(sed -n 's/^listening on //p' "$state/mock.out")
[ -n "$addr" ] || { echo "the mock did not start" >&2; exit 1; }

# Programs load the library by its SONAME, as the installed package names it.
ln -s "$lib/libpushpark.so" "$state/libpushpark.so.1"
cc -O2 -std=c11 -Wall -Wextra -Werror -pedantic -pthread -Ic-include bench/c_abi.c \
    -L"$lib" -Wl,-rpath,"$state" -lpushpark -o "$state/c_abi"
mkdir "$state/work"
"$state/c_abi" "localhost:${addr##*:}" "$state/mock/ca.pem" \
    "$state/mock/AuthKey_TESTKEY001.p8" "$state/work"
