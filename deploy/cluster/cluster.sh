#!/usr/bin/env bash
# A three-node RabbitMQ cluster on this machine, beside its own broker (rabbit@localhost:5672,
# which this script never addresses). Nodes hare1..3@localhost, AMQP on 127.0.0.1:5701-5703,
# Erlang distribution on 25701-25703; hare2 and hare3 join hare1. Needs root (the server and
# CLI scripts switch to the rabbitmq user) and the rabbitmq-server package.
#
#   cluster.sh start          start what is not running (a running cluster is left alone), print
#                             the three AMQP URLs on stdout, one a line
#   cluster.sh stop           stop the three nodes and remove their data
#   cluster.sh status         each node's state and the cluster's members; exit 3 unless all run
#   cluster.sh urls           the three AMQP URLs
#   cluster.sh stop-node N    stop node N's VM, keeping its data (a node failure)
#   cluster.sh start-node N   start node N again with its data; it rejoins the cluster
#
# Data, logs and pid files live under $NUVEM_CLUSTER_DIR (default /tmp/nuvem-ledger-cluster).
set -euo pipefail

DIR=${NUVEM_CLUSTER_DIR:-/tmp/nuvem-ledger-cluster}
NODES=(1 2 3)
START_TIMEOUT=${CLUSTER_START_TIMEOUT:-180}

# No RABBITMQ_* of the caller may select another node or config for the CLI or the servers.
for var in $(compgen -e | grep '^RABBITMQ_' || true); do unset "$var"; done

say() { echo "cluster: $*" >&2; }
node() { echo "hare$1@localhost"; }
folder() { echo "$DIR/hare$1"; }
url() { echo "amqp://guest:guest@127.0.0.1:$((5700 + $1))/"; }
ctl() { local i=$1; shift; rabbitmqctl -n "$(node "$i")" "$@"; }

registered() { epmd -names 2>/dev/null | grep -q "^name hare$1 at port"; }
app_running() { registered "$1" && rabbitmq-diagnostics -q -n "$(node "$1")" check_running >/dev/null 2>&1; }
joined() { [ "$(ctl "$1" -q eval 'lists:member(hare1@localhost, rabbit_nodes:all()).' 2>/dev/null)" = true ]; }

# The pid of node i's VM, if its pid file names a live process started from its folder.
node_pid() {
  local pid
  pid=$(cat "$(folder "$1")/pid" 2>/dev/null) || return 1
  grep -qaF "RABBITMQ_MNESIA_BASE=$(folder "$1")/mnesia" "/proc/$pid/environ" 2>/dev/null || return 1
  echo "$pid"
}

prepare() {
  local i=$1 f
  f=$(folder "$i")
  rm -rf "$f"
  mkdir -p "$f/mnesia" "$f/log"
  # The machine's rabbitmq.conf pins its listener to 5672: each node needs a config of its own.
  echo "listeners.tcp.local = 127.0.0.1:$((5700 + i))" >"$f/rabbitmq.conf"
  echo '[].' >"$f/enabled_plugins" # no management plugin: 15672 belongs to the main node
  chown -R rabbitmq:rabbitmq "$f"  # a folder the rabbitmq user cannot write: the node exits silently
}

launch() {
  local i=$1 f
  f=$(folder "$i")
  rm -f "$f/pid"
  env RABBITMQ_NODENAME="$(node "$i")" RABBITMQ_DIST_PORT=$((25700 + i)) \
    RABBITMQ_CONFIG_FILE="$f/rabbitmq.conf" RABBITMQ_ADVANCED_CONFIG_FILE="$f/advanced.config" \
    RABBITMQ_MNESIA_BASE="$f/mnesia" RABBITMQ_LOG_BASE="$f/log" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$f/enabled_plugins" RABBITMQ_PID_FILE="$f/pid" \
    rabbitmq-server -detached 9>&- # the VM must not inherit (and hold) the lock
}

# Wait until node i has registered with epmd, then until its application has started.
wait_up() {
  local i=$1 deadline=$((SECONDS + START_TIMEOUT))
  until registered "$i"; do
    if { [ -f "$(folder "$i")/pid" ] && ! node_pid "$i" >/dev/null; } || [ $SECONDS -gt $deadline ]; then
      say "$(node "$i") did not start; its log:"
      tail -n 20 "$(folder "$i")/log/$(node "$i").log" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.3
  done
  ctl "$i" -q await_startup >/dev/null
}

stop_node() {
  local i=$1 pid
  if registered "$i"; then ctl "$i" -q stop "$(folder "$i")/pid" >/dev/null 2>&1 || true; fi
  if pid=$(node_pid "$i"); then kill -9 "$pid" 2>/dev/null || true; fi
}

start() {
  local i any=false started=() failed=0
  for i in "${NODES[@]}"; do registered "$i" && any=true; done
  if ! $any; then
    # Nothing runs: whatever is on disk is a previous run's leftover. Start afresh.
    for i in "${NODES[@]}"; do stop_node "$i"; prepare "$i"; done
  fi
  for i in "${NODES[@]}"; do
    if ! registered "$i"; then
      [ -d "$(folder "$i")/mnesia" ] || prepare "$i"
      say "starting $(node "$i")"
      launch "$i"
      started+=("$i")
    fi
  done
  local pids=()
  for i in "${started[@]}"; do wait_up "$i" & pids+=($!); done
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  [ $failed = 0 ] || { say "a node did not start"; return 1; }
  for i in "${NODES[@]}"; do
    app_running "$i" || { say "starting the application of $(node "$i")"; ctl "$i" -q start_app; }
  done
  for i in 2 3; do
    if ! joined "$i"; then
      say "$(node "$i") joins hare1@localhost"
      ctl "$i" -q stop_app
      ctl "$i" -q join_cluster hare1@localhost
      ctl "$i" -q start_app
    fi
  done
  urls
}

stop() {
  local i pids=()
  for i in "${NODES[@]}"; do stop_node "$i" & pids+=($!); done
  for pid in "${pids[@]}"; do wait "$pid" || true; done
  rm -rf "$DIR"
  say "stopped"
}

status() {
  local i all=0 state
  for i in "${NODES[@]}"; do
    if app_running "$i"; then state=running
    elif registered "$i"; then state="node up, application stopped"; all=3
    else state=down; all=3; fi
    echo "$(node "$i")  $(url "$i")  $state"
  done
  for i in "${NODES[@]}"; do
    if app_running "$i"; then
      echo "members: $(ctl "$i" -q eval 'rabbit_nodes:all().' 2>/dev/null)"
      echo "running: $(ctl "$i" -q eval 'rabbit_nodes:all_running().' 2>/dev/null)"
      break
    fi
  done
  return $all
}

urls() { for i in "${NODES[@]}"; do url "$i"; done; }

number() {
  case "${1:-}" in 1 | 2 | 3) echo "$1" ;; *) say "a node number (1, 2 or 3) is needed"; exit 2 ;; esac
}

mkdir -p "$(dirname "$DIR")"
exec 9>"$DIR.lock" # one operation at a time
flock 9

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  urls) urls ;;
  stop-node) i=$(number "${2:-}"); stop_node "$i"; say "$(node "$i") stopped" ;;
  start-node)
    i=$(number "${2:-}")
    if registered "$i"; then say "$(node "$i") is running already"; else launch "$i"; wait_up "$i"; say "$(node "$i") started"; fi
    ;;
  *) echo "usage: $0 start|stop|status|urls|stop-node N|start-node N" >&2; exit 2 ;;
esac
