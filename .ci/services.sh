#!/usr/bin/env bash
# Start RabbitMQ (with its management plugin) and PostgreSQL when they are not answering.
set -euo pipefail

answers() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

wait_for() {
  local port=$1 what=$2
  for _ in $(seq 1 90); do
    answers "$port" && return 0
    sleep 1
  done
  echo "$what did not come up on port $port" >&2
  return 1
}

if ! answers 5672; then
  echo "starting RabbitMQ"
  rabbitmq-server -detached
  wait_for 5672 RabbitMQ
fi
# The tests create a vhost per test through the management API (rabbitmqctl is the slow fallback).
if ! answers 15672; then
  rabbitmq-plugins enable rabbitmq_management >/dev/null 2>&1 || true
  wait_for 15672 "RabbitMQ management" || true
fi
if ! answers 5432; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
  wait_for 5432 PostgreSQL
fi
