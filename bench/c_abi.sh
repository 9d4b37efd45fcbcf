#!/usr/bin/env bash
# Engine figures through the C ABI (bench/c_abi.c): cost per park+wake cycle, REGISTER ->
# RESUME latency seen by an event loop polling the event fd, memory per parked call.
# Release build, against `pushpark mock-apns` on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
# The command with the mock, then the library as it ships (without).
cargo build --release --features cli --bin pushpark >&2
cargo build --release --lib >&2
lib=$PWD/target/release

. bench/mock.sh
start_mock "$lib/pushpark" "$state/mock"

# Programs load the library by its SONAME, as the installed package names it.
ln -s "$lib/libpushpark.so" "$state/libpushpark.so.1"
cc -O2 -std=c11 -Wall -Wextra -Werror -pedantic -pthread -Ic-include bench/c_abi.c \
    -L"$lib" -Wl,-rpath,"$state" -lpushpark -o "$state/c_abi"
mkdir "$state/work"
"$state/c_abi" "localhost:${mock_addr##*:}" "$state/mock/ca.pem" \
    "$state/mock/AuthKey_TESTKEY001.p8" "$state/work"
