#!/bin/sh
# The `init` service of docker-compose.yml: on the first start, create a local alliance's PKI, key
# shares, enrolments and member settings in the parties' volumes; on every later start, nothing.
#
# It runs as root only to hand each volume to the image's user (10001) at the end; every file is
# written by alliance-psi itself, secret ones with mode 0600. Everything here is what the README's
# "A real deployment, by role" does by hand, with each party's files in that party's volume only:
#   /alliance/ca              the alliance CA (ca.key): mounted by this service alone
#   /alliance/custodian-2-ca  custodian-2's own CA: mounted by this service alone
#   /alliance/custodian-3-ca  custodian-3's own CA: mounted by this service alone
#   /alliance/operator        the operator's admin certificate, for `coordinator round ...`
#   /alliance/coordinator     its TLS files and signing key (its database is PostgreSQL)
#   /alliance/custodian-N     its TLS files, its share of the 2-of-3 threshold epoch, the public
#                             epoch file, its quota database
#   /alliance/bank-X          the member's own key (made here, never copied), node.toml, the public
#                             epoch file, its inbox (`node run` creates its node database)
# The epoch is dealt here (`custodian deal`, DEALER MODE: this service knew the whole key, which is
# fine for a local alliance only). In production each party makes its own files on its own
# machine, the CA stays offline and the custodians generate the epoch together with
# `custodian keygen` (deploy/README.md).
set -eu

A=/alliance
EPOCH="${ALLIANCE_PSI_EPOCH:-local-epoch}"
MEMBERS="${ALLIANCE_PSI_MEMBERS:-bank-a bank-b bank-c}"
COORDINATOR_DB="${ALLIANCE_PSI_COORDINATOR_DATABASE:-postgresql+psycopg://alliance@postgres/alliance}"
DONE="$A/ca/initialized"

if [ -e "$DONE" ]; then
  echo "the alliance is initialized already ($DONE): nothing to do"
  exit 0
fi
if [ -e "$A/ca/ca.pem" ]; then
  echo "an earlier first start stopped half-way ($A/ca/ca.pem exists, $DONE does not): remove the volumes" \
       "(docker compose down --volumes) and start again" >&2
  exit 1
fi

# The operator's CA and the servers it certifies.
alliance-psi pki init-ca --out "$A/ca" --name "Local alliance"
alliance-psi pki issue --ca-dir "$A/ca" --role coordinator --name coordinator --out "$A/coordinator" --host coordinator
alliance-psi pki issue --ca-dir "$A/ca" --role custodian --name custodian-1 --out "$A/custodian-1" --host custodian-1
alliance-psi pki issue --ca-dir "$A/ca" --role admin --name operator --out "$A/operator"
# custodian-2 and custodian-3 are other institutions: each certifies itself with a CA of its own,
# which members pin.
for custodian in custodian-2 custodian-3; do
  alliance-psi pki init-ca --out "$A/$custodian-ca" --name "Local $custodian"
  alliance-psi pki issue --ca-dir "$A/$custodian-ca" --role custodian --name "$custodian" --out "$A/$custodian" \
    --host "$custodian"
  cp "$A/$custodian-ca/ca.pem" "$A/$custodian/own-ca.pem"
done
for party in coordinator custodian-1 custodian-2 custodian-3 operator; do
  cp "$A/ca/ca.pem" "$A/ca/crl.pem" "$A/$party/"
done

alliance-psi coordinator keygen --out "$A/coordinator"
# The threshold epoch: any 2 of the 3 custodians evaluate; each share goes to its custodian only.
DEALT="$A/ca/dealt-$EPOCH"
alliance-psi custodian deal --epoch "$EPOCH" --threshold 2 --out "$DEALT" \
  --custodian custodian-1 --custodian custodian-2 --custodian custodian-3
for custodian in custodian-1 custodian-2 custodian-3; do
  mv "$DEALT/$custodian.share" "$A/$custodian/$EPOCH.share"
  cp "$DEALT/epoch.json" "$A/$custodian/$EPOCH.json"
done
# PostgreSQL may still be starting: the first enrolment waits for it, up to a minute.
tries=0
until alliance-psi coordinator admin add --cert "$A/operator/operator.pem" --database "$COORDINATOR_DB"; do
  tries=$((tries + 1))
  [ "$tries" -lt 30 ] || { echo "the coordinator's database did not answer within a minute" >&2; exit 1; }
  sleep 2
done

for member in $MEMBERS; do
  home="$A/$member"
  # Each member makes its own key; the CA certifies it from the request.
  alliance-psi pki request --role member --name "$member" --out "$home"
  alliance-psi pki issue --ca-dir "$A/ca" --csr "$home/$member.csr" --role member --name "$member" --out "$home"
  cp "$A/ca/ca.pem" "$A/ca/crl.pem" "$A/coordinator/signing.pub" "$home/"
  cp "$A/custodian-2-ca/ca.pem" "$home/custodian-2-ca.pem"
  cp "$A/custodian-3-ca/ca.pem" "$home/custodian-3-ca.pem"
  cp "$DEALT/epoch.json" "$home/$EPOCH.json"
  alliance-psi coordinator member add --cert "$home/$member.pem" --database "$COORDINATOR_DB"
  for custodian in custodian-1 custodian-2 custodian-3; do
    alliance-psi custodian member add --cert "$home/$member.pem" --database "sqlite:///$A/$custodian/quota.db"
  done
  mkdir -p -m 0700 "$home/inbox"
  cat > "$home/node.toml" <<TOML
[node]
database = "sqlite:///node.db"
member-id = "$member"
ca = "ca.pem"
cert = "$member.pem"
key = "$member.key"
coordinator = "coordinator@coordinator:7100"
coordinator-key = "signing.pub"
custodian = [
  "custodian-1@custodian-1:7101",
  "custodian-2@custodian-2:7102,ca=custodian-2-ca.pem",
  "custodian-3@custodian-3:7103,ca=custodian-3-ca.pem",
]
epoch-file = "$EPOCH.json"
data-dir = "secrets"
inbox = "inbox"
TOML
done

rm -rf "$DEALT"  # Only the public epoch file was left there; the shares were moved.
for party in coordinator custodian-1 custodian-2 custodian-3 operator $MEMBERS; do
  chown -R 10001:10001 "$A/$party"
done
touch "$DONE"
echo "alliance initialized: the CA fingerprints (the alliance's, custodian-2's, custodian-3's) and the epoch file's are printed above"
