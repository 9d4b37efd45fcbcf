#!/usr/bin/env bash
# Load benchmark: parked-and-woken calls through Kamailio or OpenSIPS + pushpark at fixed rates.
#
# Per rate: a fresh SIP server with the module (the end-to-end test config), RATE*DURATION users
# whose iPhones registered with push parameters and then went to sleep (the server restarted:
# the location table is empty, pushpark's store still has the tokens). SIPp calls each user once
# at RATE calls/s; every INVITE is parked and pushed; the mock APNs answers each push after
# APNS_DELAY_MS but tells the device simulator at once (as Apple forwards a push independently of
# its HTTP answer); the simulated phone REGISTERs after WAKE_MS and its SIP side (SIPp) answers.
#
# HOST=opensips: OpenSIPS 3.6 built from the vendored source (make -C adapters/opensips) with
# rig/opensips-pushpark.cfg instead of Debian's Kamailio with rig/kamailio-pushpark.cfg; the
# same calls, the same figures.
#
# DESKTOPS=1: each user also has a desktop softphone online (an ordinary Contact, no push
# parameters; SIPp rings it until the call is answered elsewhere), and the iPhone keeps its
# binding as RFC 8599 apps do (no restart: the location table holds both). pushpark_fork()
# rings the desktop at once and pushes the iPhone, which joins as a second branch and answers;
# the desktop gets CANCEL. The server then handles two branches per call.
#
# NODES=2 (Kamailio): two nodes sharing one redis-server (the engine's `cluster` config). The
# phones registered on node B; the calls arrive on node A, which pushes; the woken phones
# REGISTER on B, whose wake reaches A through Redis, and A relays each call through B (the Path
# B published). Both servers' CPU is counted, per call.
#
# Printed per rate: calls ok/failed, the added call-setup delay (INVITE -> 200 minus WAKE_MS)
# median and p99, the server's CPU over the run (all its processes, and the pushpark engine
# processes alone: the module's and the engine it runs as a child, in % of one core) and the SIP
# workers' CPU per call (every process but the engine's: INVITE, park, 100, wake-up REGISTER,
# resume, 200, ACK, BYE).
#
# Nothing waits without a deadline: a SIPp run with calls that never end is stopped, those
# calls count as failed and the script exits 1.
#
#   bench/load.sh                              # RATES="200 400 800" DURATION=10, Kamailio
#   HOST=opensips bench/load.sh
#   NODES=2 bench/load.sh
#   RATES="800 1000" DURATION=20 bench/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

RATES=${RATES:-"200 400 800"}
DURATION=${DURATION:-10}         # seconds of calls per rate
WAKE_MS=${WAKE_MS:-100}          # phone: push -> REGISTER
APNS_DELAY_MS=${APNS_DELAY_MS:-50}
HOST=${HOST:-kamailio}            # kamailio or opensips
CHILDREN=${CHILDREN:-8}          # UDP workers (4 do as well since the store writes behind)
REG_RATE=${REG_RATE:-1000}       # REGISTERs/s of the setup (each a new binding for the store)
SHM_MB=${SHM_MB:-512}            # shared memory: transactions linger 5 s after the call,
                                 # Kamailio's 64 MB default runs out near 400 calls/s
PARK_TIMEOUT_MS=${PARK_TIMEOUT_MS:-30000}
# Log level: Kamailio's debug (1: the config's per-call markers), OpenSIPS's log_level (2).
if [ "$HOST" = opensips ]; then LOG_LEVEL=${LOG_LEVEL:-1}; else LOG_LEVEL=${LOG_LEVEL:-0}; fi
DESKTOPS=${DESKTOPS:-0}          # 1: a desktop softphone online beside each iPhone (see above)
STORE_DIR=${STORE_DIR:-}         # where the engine keeps its device store (default: the work dir;
                                 # /dev/shm takes the disk's fsync cost out of the measurement)
NODES=${NODES:-1}                # 2: two Kamailio nodes sharing a Redis (see above)
[ "$NODES" = 1 ] || [ "$NODES$HOST$DESKTOPS" = 2kamailio0 ] || {
    echo "NODES: 1, or 2 with Kamailio and without DESKTOPS" >&2; exit 1; }

cargo build --release --features cli --bin pushpark
case $HOST in
kamailio)
    # PUSHPARK_KAMAILIO_MODULE names an already built module; otherwise build it.
    if [ -z "${PUSHPARK_KAMAILIO_MODULE:-}" ]; then make -s -C adapters/kamailio; fi
    module=${PUSHPARK_KAMAILIO_MODULE:-$root/target/kamailio/pushpark.so} ;;
opensips)
    make -s -C adapters/opensips
    module=$root/target/opensips/pushpark.so
    opensips_tree=$root/target/opensips-3.6.8 ;;
*) echo "HOST: kamailio or opensips" >&2; exit 1 ;;
esac
bin=$root/target/release/pushpark
rig=$root/src/bin/pushpark/rig

work=$(mktemp -d /tmp/pushpark-bench.XXXXXX)
store_root=${STORE_DIR:-$work}
groups=()
stop_group() {
    kill -TERM -- "-$1" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 -- "-$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL -- "-$1" 2>/dev/null || true
}
cleanup() {
    for g in "${groups[@]}"; do stop_group "$g"; done
    rm -rf "$store_root"/pushpark-bench-store-*-$$
    if [ -n "${KEEP:-}" ]; then echo "work dir kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free UDP+TCP port on loopback.
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        [ -z "$(ss -Hlnut "sport = :$p" 2>/dev/null)" ] && { echo "$p"; return; }
    done
}
# Runs a command in the work dir (SIPp writes its files there), in its own process group
# (killed on exit); sets $last.
start() {
    local log=$1; shift
    (cd "$work" && exec setsid "$@" >"$log" 2>&1 </dev/null) &
    last=$!
    groups+=("$last")
}
wait_for() { # wait_for LOG TEXT
    for _ in $(seq 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "timed out waiting for '$2' in $1" >&2; tail -20 "$1" >&2; exit 1
}

mock_port=$(free_port); control_port=$(free_port); sip_port=$(free_port); ua_port=$(free_port)
desk_port=$(free_port); sip_port_b=$(free_port); redis_port=$(free_port)
start "$work/mock.log" "$bin" mock-apns --listen "127.0.0.1:$mock_port" --state-dir "$work/mock" \
    --control "127.0.0.1:$control_port" --delay-ms "$APNS_DELAY_MS"
wait_for "$work/mock.log" "listening on"

# The scenarios, with the callee/registering user and its token taken from a CSV per call.
sed 's/\[service\]/[field0]/g' "$rig/caller.xml" >"$work/caller.xml"
sed -e 's/\[service\]/[field0]/g' -e 's/\[token\]/[field1]/g' -e 's/\[instance\]/[field2]/g' \
    "$rig/register.xml" >"$work/register.xml"
sed -e 's/\[service\]/[field0]/g' -e 's/\[instance\]/[field2]/g' "$rig/register_plain.xml" \
    >"$work/register_plain.xml"

# The server's side: start (server_start RATE N, sets server_group), pushpark's counters
# (server_stats), the engine process's pid (engine_pid).
if [ "$HOST" = kamailio ]; then
    ctl="unix:$work/ctl.sock"
    cluster=()
    [ "$NODES" = 2 ] && cluster=(-A CLUSTER)
    # server_start RATE N [-b]: -b starts node B (its own port, control socket, engine config).
    server_start() {
        start "$work/server-$1-$2${3:-}.log" kamailio -DD -E -f "$rig/kamailio-pushpark.cfg" \
            -w "$work" -Y "$work" -n "$CHILDREN" -m "$SHM_MB" -l "udp:127.0.0.1:$sip_port" \
            -A "CTL_SOCK=\"$ctl\"" -A "PUSHPARK_MODULE=\"$module\"" \
            -A "PUSHPARK_CONFIG=\"$work/pushpark-$1${3:-}.json\"" -A "DEBUG_LEVEL=$LOG_LEVEL" \
            -A PROVISIONAL=0 "${cluster[@]}"
        server_group=$last
    }
    server_stats() { kamcmd -s "$ctl" pushpark.stats 2>/dev/null; }
    engine_pid() { kamcmd -s "$ctl" core.psx | awk '/PID:/ {pid=$2} /DSC:.*pushpark/ {print pid; exit}'; }
    # node_b CMD ARGS...: a server_* function against node B.
    node_b() {
        local ctl="unix:$work/ctl-b.sock" sip_port=$sip_port_b
        "$@"
    }
else
    mi_n=0
    mi() { # mi METHOD: the answer of OpenSIPS's MI FIFO, "" when there is none within 10 s
        # Callers run in subshells ($(...), pipes): $BASHPID keeps reply names apart.
        local reply=$work/mi-reply-$BASHPID-$((mi_n += 1)) reader
        mkfifo "$reply"
        timeout 10 cat "$reply" >"$reply.json" &
        reader=$!
        # dd, not a shell redirection, which would create the file: while OpenSIPS starts,
        # mi_fifo has removed the old FIFO before its MI process makes the new one, and a
        # plain file written there in between makes that mkfifo() fail and OpenSIPS exit.
        # Non-blocking: a FIFO nobody reads (OpenSIPS killed) fails at once, no open() hang.
        if printf ':%s:{"jsonrpc":"2.0","method":"%s","id":1}\n' "${reply##*/}" "$1" |
            dd of="$work/opensips.fifo" conv=nocreat,notrunc oflag=nonblock status=none \
                2>/dev/null; then
            wait "$reader" || true
            cat "$reply.json"
        else
            kill "$reader" 2>/dev/null || true
            wait "$reader" 2>/dev/null || true
        fi
        rm -f "$reply" "$reply.json"
    }
    server_start() {
        sed -e "s|@PORT@|$sip_port|; s|@MPATH@|$opensips_tree/modules/|; s|@DIR@|$work|g" \
            -e "s|@PUSHPARK_MODULE@|$module|; s|@PUSHPARK_CONFIG@|$work/pushpark-$1.json|" \
            -e "s|@PARK_FORM@|fork|; s|@PUSH_REGISTERED@|no_live_connection|" \
            -e "s|@LOG_LEVEL@|$LOG_LEVEL|; s|@UDP_WORKERS@|$CHILDREN|; s|@PROVISIONAL@|0|" \
            "$rig/opensips-pushpark.cfg" >"$work/opensips-$1.cfg"
        start "$work/server-$1-$2.log" "$opensips_tree/opensips" -F -f "$work/opensips-$1.cfg" \
            -m "$SHM_MB"
        server_group=$last
    }
    # The counters as "name value" lines, as kamcmd prints them.
    server_stats() { mi pushpark_stats | tr '{,' '\n\n' | sed -n 's/^ *"\([a-z0-9_]*\)": *\([0-9]*\)$/\1 \2/p'; }
    engine_pid() { mi ps | tr '{' '\n' | grep '"pushpark engine"' | grep -o '"PID": *[0-9]*' | grep -o '[0-9]*$'; }
fi
server_up() { # server_up RATE N [-b]
    local deadline=$((SECONDS + 30))  # a clock, not a count: each poll may wait for an answer
    server_start "$@"
    while [ "$SECONDS" -lt "$deadline" ]; do
        server_stats | grep -q devices_stored && return 0
        kill -0 "$server_group" 2>/dev/null || break  # it exited: no use waiting
        sleep 0.1
    done
    echo "$HOST did not come up" >&2; tail -30 "$work/server-$1-$2.log" >&2; exit 1
}
# CPU ticks (user+system, all threads) of a process group, and of one process in it with its
# children (the module's process and the engine it supervises): "all one".
cpu_ticks() {
    local all=0 one=0 stat line rest pid
    for stat in /proc/[0-9]*/stat; do
        { read -r line <"$stat"; } 2>/dev/null || continue  # gone meanwhile
        # After "(comm) ": state ppid pgrp ... utime is the 12th field, stime the 13th.
        rest=${line##*) }
        read -r -a f <<<"$rest"
        [ "${f[2]}" = "$1" ] || continue
        all=$((all + f[11] + f[12]))
        pid=${stat#/proc/}; pid=${pid%/stat}
        if [ "$pid" = "$2" ] || [ "${f[1]}" = "$2" ]; then one=$((one + f[11] + f[12])); fi
    done
    echo "$all $one"
}
# Datagrams the kernel dropped because a UDP socket's receive buffer was full (all sockets).
udp_drops() { awk '/^Udp:/ && !h {for (i = 1; i <= NF; i++) col[$i] = i; h = 1; next}
    /^Udp:/ {print $col["RcvbufErrors"]}' /proc/net/snmp; }
# p-th percentile (0-100) of the numbers in a file, nearest rank.
percentile() {
    sort -n "$1" | awk -v p="$2" '{v[NR]=$1} END {if (NR==0) {print "n/a"; exit}
        r=int((p/100)*NR+0.999999); if (r<1) r=1; printf "%.0f\n", v[r]}'
}

start "$work/device-ua.log" sipp -sf "$rig/device_pickup.xml" -i 127.0.0.1 -p "$ua_port" -nostdin \
    -trace_err
if [ "$DESKTOPS" = 1 ]; then
    start "$work/desktop-ua.log" sipp -sf "$rig/device_ring.xml" -i 127.0.0.1 -p "$desk_port" \
        -nostdin -trace_err
fi
# The phones register where they live: node B with NODES=2.
registrar_port=$sip_port
if [ "$NODES" = 2 ]; then
    registrar_port=$sip_port_b
    start "$work/redis.log" redis-server --port "$redis_port" --bind 127.0.0.1 --save "" \
        --appendonly no
    wait_for "$work/redis.log" "Ready to accept connections"
fi
start "$work/device-sim.log" "$bin" device-sim --control "127.0.0.1:$control_port" \
    --registrar "127.0.0.1:$registrar_port" --any-contact-port "$ua_port" --wake-delay-ms "$WAKE_MS"
wait_for "$work/device-sim.log" "ready"
hz=$(getconf CLK_TCK)

printf '\nAPNs answers after %s ms, phone wakes %s ms after the push, %s s per rate\n' \
    "$APNS_DELAY_MS" "$WAKE_MS" "$DURATION"
[ "$DESKTOPS" = 1 ] && echo "each user: a desktop online (rings at once) and an iPhone pushed beside it"
printf '%s: %s workers, %s MB shared memory; engine store in %s\n' "$HOST" "$CHILDREN" "$SHM_MB" \
    "$store_root"
[ "$NODES" = 2 ] && echo "two nodes, one redis-server: calls on A, phones register on B, A relays through B"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) (other work skews the figures)"
printf '%8s %8s %8s %14s %11s %12s %12s %18s %10s\n' rate/s ok failed "added median" \
    "added p99" "server CPU" "engine CPU" "workers CPU/call" "UDP drops"

for rate in $RATES; do
    n=$((rate * DURATION))
    for node in "" -b; do
        [ "$NODES" = 1 ] && [ -n "$node" ] && break
        cluster_cfg=""
        [ "$NODES" = 2 ] && cluster_cfg=", \"cluster\": { \"redis_url\": \"redis://127.0.0.1:$redis_port/0\",
  \"key_prefix\": \"r$rate:\", \"node_id\": \"node${node:-a}\" }"
        cat >"$work/pushpark-$rate$node.json" <<EOF
{ "apns": { "endpoint": "127.0.0.1:$mock_port", "ca_file": "$work/mock/ca.pem",
            "auth": { "key_file": "$work/mock/AuthKey_TESTKEY001.p8", "key_id": "TESTKEY001",
                      "team_id": "TESTTEAM01" } },
  "park": { "timeout_ms": $PARK_TIMEOUT_MS, "recent_register_ms": 0, "max_per_aor": 8 },
  "push": { "min_interval_ms": 0 },
  "store": { "dir": "$store_root/pushpark-bench-store-$rate$node-$$" },
  "log_level": "warn"$cluster_cfg }
EOF
    done
    # Users r<rate>u<i>; the token's first 32 hex digits make the +sip.instance (device-sim's rule).
    awk -v n="$n" -v r="$rate" 'BEGIN { print "SEQUENTIAL";
        for (i = 0; i < n; i++) { t = sprintf("%08x%024x", r, i);
            printf "r%du%d;%s%s;%s-%s-%s-%s-%s\n", r, i, t, t, substr(t,1,8), substr(t,9,4),
                substr(t,13,4), substr(t,17,4), substr(t,21,12) } }' >"$work/users-$rate.csv"

    if [ "$NODES" = 2 ]; then
        node_b server_up "$rate" 1 -b
        group_b=$server_group
    fi
    server_up "$rate" 1
    # The phones register while awake, then the server restarts: asleep.
    # A hard deadline beside SIPp's -timeout, which waits for the REGISTERs under way.
    timeout -s INT -k 10 150 sipp "127.0.0.1:$registrar_port" -sf "$work/register.xml" \
        -inf "$work/users-$rate.csv" -r "$REG_RATE" -m "$n" -i 127.0.0.1 -p "$(free_port)" \
        -nostdin -key expires 3600 -key provider apns -key param TESTTEAM01.com.example.app.voip \
        -key contact_port "$ua_port" -timeout 120s >"$work/register-$rate.log" 2>&1 || {
        echo "registering $n phones failed" >&2; tail -20 "$work/register-$rate.log" >&2; exit 1; }
    # The engine stores bindings in the background: all of them before the restart.
    # With NODES=2 on B, and on A through Redis.
    for node in "" node_b; do
        [ "$NODES" = 1 ] && [ -n "$node" ] && break
        stored=0
        deadline=$((SECONDS + 60))
        while [ "$SECONDS" -lt "$deadline" ]; do
            stored=$($node server_stats | awk '/devices_stored/ {print $2}')
            [ "${stored:-0}" -ge "$n" ] && break
            sleep 0.1
        done
        [ "${stored:-0}" -ge "$n" ] || { echo "only ${stored:-0} of $n phones stored" >&2; exit 1; }
    done
    if [ "$DESKTOPS" = 1 ]; then
        # The desktops (instance: the iPhone's with its first hex digit made a "d") register too; the
        # iPhones keep their bindings.
        awk -F';' 'NR == 1 {print; next} {OFS = ";"; $3 = "d" substr($3, 2); print}' \
            "$work/users-$rate.csv" >"$work/desktops-$rate.csv"
        timeout -s INT -k 10 150 sipp "127.0.0.1:$sip_port" -sf "$work/register_plain.xml" \
            -inf "$work/desktops-$rate.csv" -r "$REG_RATE" -m "$n" -i 127.0.0.1 -p "$(free_port)" \
            -nostdin -key expires 3600 \
            -key contact_port "$desk_port" -timeout 120s >"$work/register-desktops-$rate.log" 2>&1 || {
            echo "registering $n desktops failed" >&2; tail -20 "$work/register-desktops-$rate.log" >&2
            exit 1; }
    elif [ "$NODES" = 2 ]; then
        stop_group "$group_b"
        group_a=$server_group
        node_b server_up "$rate" 2 -b
        group_b=$server_group server_group=$group_a
        engine_b=$(node_b engine_pid)
    else
        stop_group "$server_group"
        server_up "$rate" 2
    fi
    engine=$(engine_pid)

    read -r cpu0 eng0 < <(cpu_ticks "$server_group" "$engine")
    [ "$NODES" = 2 ] && read -r cpu0_b eng0_b < <(cpu_ticks "$group_b" "$engine_b")
    drops0=$(udp_drops)
    t0=$(date +%s.%N)
    cd "$work"
    # SIPp's -timeout only stops new calls, then waits for those under way: one whose final
    # reply never comes (after a 100 the INVITE is not retransmitted) would hold SIPp and
    # this script for ever. -recv_timeout fails such a call (counted) once it waited longer
    # than any parked call may (the park timeout, then tm's guard); the deadline stops SIPp
    # (SIGINT: it still prints its counts) should it hang anyway.
    deadline=$((DURATION + PARK_TIMEOUT_MS / 1000 + 60))
    caller_rc=0
    timeout -s INT -k 10 "$deadline" sipp "127.0.0.1:$sip_port" -sf "$work/caller.xml" \
        -inf "$work/users-$rate.csv" -r "$rate" -m "$n" -l $((rate * 10)) -d 0 -i 127.0.0.1 \
        -p "$(free_port)" -nostdin -trace_rtt -trace_err -rtt_freq 1 \
        -recv_timeout $((PARK_TIMEOUT_MS + 10000)) >"$work/caller-$rate.log" 2>&1 || caller_rc=$?
    caller_pid=$(ls -t "$work"/caller_*_rtt.csv | head -1 | sed 's/.*caller_\([0-9]*\)_rtt.csv/\1/')
    cd "$root"
    t1=$(date +%s.%N)
    read -r cpu1 eng1 < <(cpu_ticks "$server_group" "$engine")
    if [ "$NODES" = 2 ]; then
        # Both nodes' CPU.
        read -r cpu1_b eng1_b < <(cpu_ticks "$group_b" "$engine_b")
        cpu1=$((cpu1 + cpu1_b - cpu0_b)) eng1=$((eng1 + eng1_b - eng0_b))
    fi
    drops=$(($(udp_drops) - drops0))

    ok=$(awk -F'|' '/Successful call/ {gsub(/ /,"",$3); v=$3} END {print v+0}' "$work/caller-$rate.log")
    failed=$(awk -F'|' '/Failed call/ {gsub(/ /,"",$3); v=$3} END {print v+0}' "$work/caller-$rate.log")
    if [ "$caller_rc" = 124 ] || [ "$caller_rc" = 137 ]; then  # timeout stopped it (137: KILL)
        echo "rate $rate: SIPp had not finished after $deadline s: stopped, $((n - ok - failed))" \
            "calls that never ended count as failed (see $work/caller-$rate.log)" >&2
        failed=$((n - ok))
        bench_failed=1
    fi
    awk -F';' -v w="$WAKE_MS" 'NR>1 && $3=="1" {print $2 - w}' \
        "$work/caller_${caller_pid}_rtt.csv" >"$work/added-$rate.txt"
    mv "$work/caller_${caller_pid}_rtt.csv" "$work/rtt-$rate.csv"
    median=$(percentile "$work/added-$rate.txt" 50)
    p99=$(percentile "$work/added-$rate.txt" 99)
    awk -v r="$rate" -v ok="$ok" -v failed="$failed" -v med="$median" -v p99="$p99" \
        -v c="$((cpu1 - cpu0))" -v e="$((eng1 - eng0))" -v hz="$hz" -v drops="$drops" -v wall="$(awk -v a="$t0" \
        -v b="$t1" 'BEGIN {print b - a}')" 'BEGIN {
        printf "%8s %8s %8s %11s ms %8s ms %10.0f %% %10.0f %% %15.0f us %10d\n", r, ok,
            failed, med, p99, c / hz / wall * 100, e / hz / wall * 100,
            (c - e) / hz / (ok + failed + 1e-9) * 1e6, drops }'
    server_stats >"$work/stats-$rate.txt" 2>&1 || true
    stop_group "$server_group"
    if [ "$NODES" = 2 ]; then
        node_b server_stats >"$work/stats-$rate-b.txt" 2>&1 || true
        stop_group "$group_b"
    fi
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
[ -z "${bench_failed:-}" ] || { echo "FAILED: SIPp hung at some rate (see above)" >&2; exit 1; }
