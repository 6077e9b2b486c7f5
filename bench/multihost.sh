#!/usr/bin/env bash
# Three hosts on this machine: a bulk send drained by Celery workers on two of them, the web
# server on the third, PostgreSQL, Redis and the Meta sandbox reached over veth links.
#
#     sudo bench/multihost.sh [--recipients 100000] [--rate 1000] [--scenario a|b|both] [...]
#
# Network namespaces `mh-web`, `mh-w1` and `mh-w2`, each with one end of a veth pair; the other
# ends are ports of a bridge in the root namespace holding the bridge address, where the shared
# services are reached: PostgreSQL through a PgBouncer listening there (the machine's PostgreSQL
# listens on 127.0.0.1 only and is not reconfigured), a redis-server of the bench's own, the
# sandbox. Only addresses of MULTIHOST_SUBNET (default 10.231.0, a /24) are used; the script
# refuses to start if any of them, the bridge or the namespaces exist already, and removes all of
# them on the way out (a normal end, a failure, Ctrl-C or SIGTERM). The machine's own interfaces,
# PostgreSQL and Redis are left as they are.
#
# The scenarios, the services and the figures are bench/multihost.py's (`--help`); every option
# is passed on to it.
set -euo pipefail

SUBNET="${MULTIHOST_SUBNET:-10.231.0}"
BRIDGE="mhbr0"
HOSTS=(web w1 w2)
declare -A ADDRESS=([web]="$SUBNET.10" [w1]="$SUBNET.11" [w2]="$SUBNET.12")
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON="$(command -v python3)"

say() { printf '%s\n' "$*" >&2; }
die() {
    say "multihost.sh: $*"
    exit 2
}

[[ "$(id -u)" == 0 ]] || die "run it as root (network namespaces and veth pairs need it)"
[[ "$SUBNET" =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "MULTIHOST_SUBNET=$SUBNET: give three octets"
for tool in ip pgbouncer redis-server; do
    command -v "$tool" >/dev/null || [[ -x "/usr/sbin/$tool" ]] || die "$tool is not installed"
done

# Refuse anything that is already there: it is someone else's, and the trap would remove it.
if ip -4 -o addr show | grep -q " inet ${SUBNET//./\\.}\."; then
    die "addresses of $SUBNET.0/24 are in use on this machine: set MULTIHOST_SUBNET to a free /24"
fi
if ip -4 route show | grep -q "^${SUBNET//./\\.}\."; then
    die "a route to $SUBNET.0/24 exists on this machine: set MULTIHOST_SUBNET to a free /24"
fi
if ip link show "$BRIDGE" >/dev/null 2>&1; then
    die "interface $BRIDGE exists already (another run?)"
fi
for host in "${HOSTS[@]}"; do
    if ip netns list | grep -qw "mh-$host"; then
        die "network namespace mh-$host exists already (another run?)"
    fi
    if ip link show "mhb-$host" >/dev/null 2>&1; then
        die "interface mhb-$host exists already (another run?)"
    fi
done

CREATED_NAMESPACES=()
CREATED_LINKS=()

teardown() {
    local status=$?
    trap - EXIT INT TERM
    # The driver stops what it started; a process it could not stop still runs in a namespace
    # of ours: end it by its id (only processes inside our own namespaces are listed).
    local ns pids
    for ns in "${CREATED_NAMESPACES[@]}"; do
        pids="$(ip netns pids "$ns" 2>/dev/null || true)"
        if [[ -n "$pids" ]]; then
            say "ending what is left in $ns: $pids"
            # shellcheck disable=SC2086  # one id a word
            kill -TERM $pids 2>/dev/null || true
            sleep 2
            pids="$(ip netns pids "$ns" 2>/dev/null || true)"
            # shellcheck disable=SC2086
            [[ -z "$pids" ]] || kill -KILL $pids 2>/dev/null || true
        fi
    done
    local link
    for link in "${CREATED_LINKS[@]}"; do
        ip link delete "$link" 2>/dev/null || true # its peer goes with it
    done
    for ns in "${CREATED_NAMESPACES[@]}"; do
        ip netns delete "$ns" 2>/dev/null || true
    done
    say "multihost.sh: removed $BRIDGE, the veth pairs and namespaces ${CREATED_NAMESPACES[*]:-(none)}"
    exit "$status"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ip link add "$BRIDGE" type bridge
CREATED_LINKS+=("$BRIDGE")
ip addr add "$SUBNET.1/24" dev "$BRIDGE"
ip link set "$BRIDGE" up

for host in "${HOSTS[@]}"; do
    ns="mh-$host"
    ip netns add "$ns"
    CREATED_NAMESPACES+=("$ns")
    # mhb-HOST: the bridge's port (root namespace); mhh-HOST: the host's interface.
    ip link add "mhb-$host" type veth peer name "mhh-$host"
    CREATED_LINKS+=("mhb-$host")
    ip link set "mhh-$host" netns "$ns"
    ip link set "mhb-$host" master "$BRIDGE"
    ip link set "mhb-$host" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "${ADDRESS[$host]}/24" dev "mhh-$host"
    ip -n "$ns" link set "mhh-$host" up
done

# Each host reaches the bridge address before anything starts: a connection refused there (no
# one listens on port 9) is an answer over the link; a timeout is not.
for host in "${HOSTS[@]}"; do
    ip netns exec "mh-$host" "$PYTHON" - "$SUBNET.1" <<'PY' || die "host $host does not reach $SUBNET.1"
import socket, sys, time
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    try:
        socket.create_connection((sys.argv[1], 9), timeout=1).close()
        sys.exit(0)
    except ConnectionRefusedError:
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
done
say "multihost.sh: bridge $BRIDGE $SUBNET.1; web ${ADDRESS[web]}, w1 ${ADDRESS[w1]}, w2 ${ADDRESS[w2]}"

# Not exec: the trap must run after the driver.
cd "$ROOT"
"$PYTHON" bench/multihost.py \
    --bridge-address "$SUBNET.1" \
    --web "mh-web=${ADDRESS[web]}" \
    --worker "mh-w1=${ADDRESS[w1]}=mhb-w1" \
    --worker "mh-w2=${ADDRESS[w2]}=mhb-w2" \
    "$@"
