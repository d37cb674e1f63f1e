#!/usr/bin/env bash
# make container-test: the image and docker-compose.yml, run for real with podman.
#
#  1. Debian bookworm bases made with debootstrap and `podman import` (this machine has no image
#     registry): one with Python 3.11, venv and libsodium for the image, one with PostgreSQL 15.
#     Kept as tarballs in $ALLIANCE_PSI_CONTAINER_CACHE, so a second run skips debootstrap.
#  2. A wheelhouse of every dependency (pip, before the build), then the image built from the
#     Dockerfile with --network none: the build asks no index.
#  3. docker-compose.yml under tests/container/compose.test.yml (the compose file's own networks,
#     on bridges podman makes; a `scraper` container standing in for Prometheus), with
#     podman-compose and a random POSTGRES_PASSWORD; waits for the init service and for every
#     server's and member node's health check (three custodians, a 2-of-3 epoch).
#  4. The networks keep each party to its part: a member's container reaches the coordinator's and
#     custodians' gRPC ports, and neither PostgreSQL nor any party's metrics port, by name or by
#     address (nor does a custodian's); the scraper reads every party's metrics port.
#  5. A round end to end: a blacklist file is dropped into each member's inbox and each `node run`
#     imports it (its metrics count the rows); the operator opens the round; each node joins it by
#     itself and keeps the verified result; `node report` writes each member's JSON report, whose
#     leads are checked against tests/container/inbox/expected-leads.json and which is verified
#     with `report verify`.
#  6. Everything torn down, volumes and networks included, whatever happened.
#
# ALLIANCE_PSI_TEST_PROJECT names the compose project (and the image's tag): two runs on one
# machine under different names keep to their own containers, volumes and networks.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV_BIN=$ROOT/.venv/bin
export CONTAINERS_CONF=$ROOT/tests/container/containers.conf
CACHE=${ALLIANCE_PSI_CONTAINER_CACHE:-/var/cache/alliance-psi/container-test}
BASE=localhost/alliance-psi-base:bookworm
PG_IMAGE=localhost/alliance-psi-test-postgres:bookworm
PROJECT=${ALLIANCE_PSI_TEST_PROJECT:-alliance-psi-test}
export ALLIANCE_PSI_IMAGE=localhost/alliance-psi:$PROJECT
export ALLIANCE_PSI_ROUND=container-test-1
# The compose file requires one (README.md, "Run with containers"); a new one for every run.
POSTGRES_PASSWORD=$("$VENV_BIN/python" -c 'import secrets; print(secrets.token_hex(24))')
export POSTGRES_PASSWORD
MEMBERS=(bank-a bank-b bank-c)
compose=("$VENV_BIN/podman-compose" -p "$PROJECT" -f docker-compose.yml -f tests/container/compose.test.yml)

step() { printf '\n== [%3ss] %s\n' "$SECONDS" "$*"; }
fail() { echo "container test FAILED: $*" >&2; exit 1; }
container() { echo "${PROJECT}_$1_1"; }
remove_volumes() {
  podman volume ls --quiet | grep "^${PROJECT}_" | xargs --no-run-if-empty podman volume rm --force > /dev/null || true
  podman network ls --format '{{.Name}}' | grep "^${PROJECT}_" | xargs --no-run-if-empty podman network rm --force \
    > /dev/null || true
}

step "system packages: podman, runc, debootstrap"
bash scripts/ensure_sysdeps.sh container
SERVERS=(coordinator custodian-1 custodian-2 custodian-3)
# Each party's metrics port (docker-compose.yml), served at PARTY-metrics on its own network.
declare -A METRICS_PORT=([coordinator]=9464 [custodian-1]=9465 [custodian-2]=9466 [custodian-3]=9467
  [bank-a]=9470 [bank-b]=9471 [bank-c]=9472)

step "base images (debootstrap --variant=minbase bookworm, podman import)"
mkdir -p "$CACHE"
if [ ! -s "$CACHE/base.tar" ] || [ ! -s "$CACHE/postgres.tar" ]; then
  work=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  debootstrap --variant=minbase --include=python3,python3-venv,libsodium23 bookworm "$work/base" \
    > "$CACHE/debootstrap.log" 2>&1 || { tail -20 "$CACHE/debootstrap.log"; fail "debootstrap"; }
  cp -a "$work/base" "$work/postgres"
  cp /etc/resolv.conf "$work/postgres/etc/resolv.conf"
  chroot "$work/postgres" /bin/sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends postgresql-15' > "$CACHE/postgres.log" 2>&1 \
    || { tail -20 "$CACHE/postgres.log"; fail "installing postgresql-15 in the PostgreSQL base"; }
  for root in "$work/base" "$work/postgres"; do
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* "$root"/usr/share/doc \
      "$root"/usr/share/man "$root"/usr/share/locale "$root"/etc/resolv.conf
  done
  tar -C "$work/base" -cf "$CACHE/base.tar.part" . && mv "$CACHE/base.tar.part" "$CACHE/base.tar"
  tar -C "$work/postgres" -cf "$CACHE/postgres.tar.part" . && mv "$CACHE/postgres.tar.part" "$CACHE/postgres.tar"
  rm -rf "$work"
  podman rmi --force "$BASE" "$PG_IMAGE" > /dev/null 2>&1 || true
fi
podman image exists "$BASE" || podman import --quiet "$CACHE/base.tar" "$BASE" > /dev/null
podman image exists "$PG_IMAGE" || podman import --quiet "$CACHE/postgres.tar" "$PG_IMAGE" > /dev/null

step "wheelhouse (pip wheel, before the build)"
"$VENV_BIN/pip" wheel --quiet --wheel-dir wheelhouse . 'setuptools>=77' wheel 2>&1 | grep -v '^WARNING: Location' || true
rm -f wheelhouse/alliance_psi-*.whl
ls wheelhouse/*.whl > /dev/null

step "image (podman build --network none --build-arg BASE=$BASE)"
podman build --quiet --format docker --network none --build-arg "BASE=$BASE" --build-arg WHEELHOUSE=wheelhouse \
  -t "$ALLIANCE_PSI_IMAGE" . > /dev/null
size=$(podman image inspect --format '{{.Size}}' "$ALLIANCE_PSI_IMAGE")
echo "image $ALLIANCE_PSI_IMAGE: $((size / 1000000)) MB ($size bytes)"
podman run --rm --network none --entrypoint /bin/sh "$ALLIANCE_PSI_IMAGE" -c \
  'echo "runs as uid $(id -u)"; test "$(id -u)" != 0; for c in cc gcc g++ clang; do ! command -v $c; done; alliance-psi --version' \
  || fail "the image runs as root or has a compiler"

teardown() {
  local status=$?
  step "teardown (podman-compose down --volumes)"
  if [ "$status" -ne 0 ]; then
    for service in postgres init "${SERVERS[@]}" "${MEMBERS[@]}" scraper; do
      echo "--- logs of $service (last 30 lines)"
      podman logs --tail 30 "$(container "$service")" 2>&1 || true
    done
  fi
  "${compose[@]}" down --volumes --timeout 10 > /dev/null 2>&1 || true
  remove_volumes
  echo "container test took ${SECONDS}s"
  exit "$status"
}
trap teardown EXIT
"${compose[@]}" down --volumes --timeout 5 > /dev/null 2>&1 || true
remove_volumes

step "the alliance: podman-compose up (the compose file's networks)"
# podman 4.3 cannot wait for a dependency's health or exit (podman-compose ignores those conditions
# there, and its --requires links fail to start once init has exited): start PostgreSQL and init,
# wait for init to finish, then the rest, as depends_on says.
"${compose[@]}" up -d --no-deps postgres init > "$CACHE/compose-up.log" 2>&1 \
  || { cat "$CACHE/compose-up.log"; fail "compose up postgres init"; }
init_status=$(podman wait "$(container init)")
podman logs "$(container init)" 2>&1 | grep -E 'fingerprint|initialized' || true
[ "$init_status" = 0 ] || { podman logs --tail 30 "$(container init)"; fail "init exited with $init_status"; }
"${compose[@]}" up -d --no-deps >> "$CACHE/compose-up.log" 2>&1 || { cat "$CACHE/compose-up.log"; fail "compose up"; }

step "waiting for every server's and member node's health check (the image's HEALTHCHECK: alliance-psi health on /readyz)"
for server in "${SERVERS[@]}" "${MEMBERS[@]}"; do
  for _ in $(seq 90); do
    if podman healthcheck run "$(container "$server")" > /dev/null 2>&1; then
      echo "$server: healthy"
      continue 2
    fi
    sleep 1
  done
  podman exec "$(container "$server")" alliance-psi health --url "$(podman exec "$(container "$server")" printenv ALLIANCE_PSI_HEALTH_URL)" || true
  fail "$server did not become healthy within 90 s"
done

metrics() {  # metrics PARTY [METRIC]: the scraper reads PARTY's metrics port; print METRIC's samples.
  podman exec -i "$(container scraper)" python - "$1-metrics:${METRICS_PORT[$1]}" "${@:2}" <<'PY'
import sys, urllib.request
address, wanted = sys.argv[1], sys.argv[2:]
with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as answer:
    text = answer.read().decode()
assert "alliance_psi_build_info" in text, text[:500]
samples = [line for line in text.splitlines() if not line.startswith("#")]
if wanted:
    print(" ".join(line for line in samples if line.startswith(wanted[0] + "{")))
else:
    print(f"{address}/metrics: {len(samples)} samples")
PY
}

reach() {  # reach SERVICE HOST:PORT...: from inside SERVICE's container, "HOST:PORT open" or "... closed: why".
  podman exec -i "$(container "$1")" python - "${@:2}" <<'PY'
import socket, sys
from concurrent.futures import ThreadPoolExecutor

def attempt(target: str) -> str:
    host, _, port = target.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as exc:
        return f"{target} closed: {exc.strerror or exc}"
    return f"{target} open"

with ThreadPoolExecutor(len(sys.argv) - 1) as pool:
    print("\n".join(pool.map(attempt, sys.argv[1:])))
PY
}
expect_reach() {  # expect_reach open|closed SERVICE HOST:PORT...: fail unless every address is so from SERVICE.
  local want=$1 source=$2 answers
  answers=$(reach "$source" "${@:3}") || fail "could not try the addresses from $source"
  echo "$answers" | sed "s/^/$source -> /"
  if echo "$answers" | grep -v " $want" > /dev/null; then
    fail "from $source, expected $want: $(echo "$answers" | grep -v " $want" | tr '\n' ';')"
  fi
}
address_on() {  # address_on SERVICE NETWORK: the container's address on the project's NETWORK.
  podman inspect --format "{{(index .NetworkSettings.Networks \"${PROJECT}_$2\").IPAddress}}" "$(container "$1")"
}

step "each server's and member node's plain metrics port, where Prometheus (the metrics profile) scrapes it"
for party in "${SERVERS[@]}" "${MEMBERS[@]}"; do
  metrics "$party" || fail "no metrics at $party-metrics:${METRICS_PORT[$party]}"
done

step "the networks: a member reaches the servers' gRPC ports, and neither PostgreSQL nor any metrics port"
expect_reach open bank-b coordinator:7100 custodian-1:7101 custodian-2:7102 custodian-3:7103
for source in bank-b custodian-1; do
  closed=(postgres:5432 "$(address_on postgres database):5432")
  for party in "${SERVERS[@]}" "${MEMBERS[@]}"; do
    [ "$party" = "$source" ] && continue
    port=${METRICS_PORT[$party]}
    # By its metrics name, at its address on the alliance network, at its metrics network address.
    closed+=("$party-metrics:$port" "$party:$port" "$(address_on "$party" "metrics-$party"):$port")
  done
  expect_reach closed "$source" "${closed[@]}"
done
expect_reach closed scraper postgres:5432 "$(address_on postgres database):5432"

step "a blacklist file dropped into each member's inbox (NAME.part, then renamed)"
for member in "${MEMBERS[@]}"; do
  # Written beside its final name, then renamed: the node never reads half a file.
  podman exec -i "$(container "$member")" /bin/sh -c \
    'cat > inbox/blacklist.csv.part && mv inbox/blacklist.csv.part inbox/blacklist.csv' < "tests/container/inbox/$member.csv"
done
for member in "${MEMBERS[@]}"; do
  for _ in $(seq 120); do
    if podman exec "$(container "$member")" test -e inbox/done/blacklist.csv; then
      continue 2
    fi
    sleep 1
  done
  podman exec "$(container "$member")" /bin/sh -c 'ls -la inbox inbox/*; cat inbox/failed/*.txt' || true
  fail "$member's node did not import its file within two minutes"
done
for member in "${MEMBERS[@]}"; do
  echo "$member-metrics:${METRICS_PORT[$member]}: $(metrics "$member" alliance_psi_import_rows_total)"
done

step "the operator opens round $ALLIANCE_PSI_ROUND (admin certificate, over mTLS)"
"${compose[@]}" --profile tools run --rm --no-deps operator coordinator round create --coordinator coordinator:7100 \
  --ca ca.pem --cert operator.pem --key operator.key --id "$ALLIANCE_PSI_ROUND" --name "container test" \
  --threshold 2 --epoch local-epoch --types phone,id_card --invite bank-a,bank-b,bank-c --deadline-minutes 30

step "waiting for each member node to join, and keep the verified result"
for member in "${MEMBERS[@]}"; do
  for _ in $(seq 180); do
    if podman logs "$(container "$member")" 2>&1 | grep -qE "round $ALLIANCE_PSI_ROUND: .*result verified and kept"; then
      podman logs "$(container "$member")" 2>&1 | grep "round $ALLIANCE_PSI_ROUND" | sed "s/^/$member: /"
      continue 2
    fi
    sleep 1
  done
  fail "$member's node kept no result within three minutes"
done

step "the leads each member found (node report, then report verify)"
checked=0
for member in "${MEMBERS[@]}"; do
  podman exec "$(container "$member")" alliance-psi node report "$ALLIANCE_PSI_ROUND" --config node.toml \
    --format json -o "$ALLIANCE_PSI_ROUND.json" > /dev/null || fail "node report for $member"
  podman exec "$(container "$member")" alliance-psi report verify "$ALLIANCE_PSI_ROUND.json" \
    --ca ca.pem --coordinator-key signing.pub > "$CACHE/verify-$member.txt" 2>&1 \
    || { cat "$CACHE/verify-$member.txt"; fail "report verify refused $member's report"; }
  podman exec "$(container "$member")" cat "$ALLIANCE_PSI_ROUND.json" \
    | "$VENV_BIN/python" tests/container/check_leads.py "$member" tests/container/inbox/expected-leads.json || fail "$member's leads"
  echo "$member: JSON report verified ($(head -1 "$CACHE/verify-$member.txt"))"
  checked=$((checked + 1))
done

echo
echo "container test: $checked members' leads as expected; image $((size / 1000000)) MB"
