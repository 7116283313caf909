#!/bin/sh
# One-shot: make sure the namespace exists, then register Arrears' custom search attributes.
# Usage: register-search-attributes.sh Name=Type [Name=Type ...]
# Runs in temporalio/admin-tools (it ships the `temporal` CLI). Each attribute is created on
# its own and "already exists" counts as success, so the script can run any number of times.
set -eu

ADDRESS=${TEMPORAL_ADDRESS:-temporal:7233}
NAMESPACE=${TEMPORAL_NAMESPACE:-default}
MAX_ATTEMPTS=${MAX_ATTEMPTS:-90}

if [ "$#" -eq 0 ]; then
  echo "usage: $0 Name=Type [Name=Type ...]" >&2
  exit 2
fi

# gRPC in the CLI can pick an unreachable address for a compose host name; resolve to IPv4
# first (the same work-around as temporalio/samples-server compose/scripts/create-namespace.sh).
HOST=${ADDRESS%:*}
PORT=${ADDRESS##*:}
IP=$(getent ahostsv4 "$HOST" 2>/dev/null | awk 'NR == 1 { print $1 }' || true)
if [ -n "$IP" ]; then
  ADDRESS="${IP}:${PORT}"
fi

echo "Waiting for the Temporal server at ${ADDRESS}..."
attempt=0
until temporal operator cluster health --address "$ADDRESS" >/dev/null 2>&1; do
  attempt=$((attempt + 1))
  if [ "$attempt" -ge "$MAX_ATTEMPTS" ]; then
    echo "Temporal server did not answer after ${attempt} attempts" >&2
    exit 1
  fi
  sleep 2
done
echo "Temporal server is up"

if temporal operator namespace describe --namespace "$NAMESPACE" --address "$ADDRESS" >/dev/null 2>&1; then
  echo "Namespace ${NAMESPACE} exists"
else
  out=$(temporal operator namespace create --namespace "$NAMESPACE" --address "$ADDRESS" 2>&1) || {
    case "$out" in
      *"already"*) ;;
      *) echo "$out" >&2; exit 1 ;;
    esac
  }
  echo "Namespace ${NAMESPACE} created"
fi

for spec in "$@"; do
  name=${spec%%=*}
  type=${spec#*=}
  if [ -z "$name" ] || [ "$name" = "$spec" ] || [ -z "$type" ]; then
    echo "bad attribute spec '${spec}', expected Name=Type" >&2
    exit 2
  fi
  # A namespace created a moment ago can take a few seconds to reach every service: retry.
  try=0
  while :; do
    if out=$(temporal operator search-attribute create --namespace "$NAMESPACE" --address "$ADDRESS" \
        --name "$name" --type "$type" 2>&1); then
      echo "Registered ${name} (${type})"
      break
    fi
    case "$out" in
      *"already exists"*|*"AlreadyExists"*)
        echo "${name} already exists"
        break
        ;;
    esac
    try=$((try + 1))
    if [ "$try" -ge 10 ]; then
      echo "Could not register ${name} (${type}): ${out}" >&2
      exit 1
    fi
    sleep 3
  done
done

echo "Search attributes ready on namespace ${NAMESPACE}"
