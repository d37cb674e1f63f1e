#!/bin/sh
# A member node in a container (docker-compose.yml, deploy/kubernetes), until `alliance-psi node run` exists: every
# $ALLIANCE_PSI_INTERVAL seconds, import the files dropped in inbox/ (moved to inbox/done/ or
# inbox/failed/, with the import's output beside them), join round $ALLIANCE_PSI_ROUND once it
# exists, fetch its verified result once it is matched and write the reports to reports/.
# Runs in the member's volume, as the image's user; every step is an ordinary `alliance-psi node`
# command with the member's node.toml.
set -u
cd /var/lib/alliance-psi
ROUND="${ALLIANCE_PSI_ROUND:-local-1}"
INTERVAL="${ALLIANCE_PSI_INTERVAL:-5}"
mkdir -p inbox/done inbox/failed reports
echo "member node $(sed -n 's/^member-id = "\(.*\)"/\1/p' node.toml): watching inbox/ every ${INTERVAL}s; round $ROUND"
trap 'exit 0' TERM INT

while :; do
  for file in inbox/*; do
    [ -f "$file" ] || continue
    name=$(basename "$file")
    if alliance-psi node import "$file" --config node.toml --rejects "inbox/done/$name.rejects.csv" \
         > "inbox/done/$name.log" 2>&1; then
      mv "$file" inbox/done/ && echo "imported $name"
    else
      mv "inbox/done/$name.log" "inbox/failed/$name.log"
      [ ! -e "inbox/done/$name.rejects.csv" ] || mv "inbox/done/$name.rejects.csv" inbox/failed/
      mv "$file" inbox/failed/ && echo "refused $name: see inbox/failed/$name.log"
    fi
  done
  if [ -e node.db ] && [ ! -e "reports/$ROUND.json" ]; then
    if [ ! -e "reports/$ROUND.joined" ]; then
      alliance-psi node join "$ROUND" --config node.toml --wait 0 > "reports/$ROUND.join.log" 2>&1 \
        && touch "reports/$ROUND.joined" && echo "joined round $ROUND"
    elif alliance-psi node fetch "$ROUND" --config node.toml > "reports/$ROUND.fetch.log" 2>&1; then
      for format in json csv html; do
        alliance-psi node report "$ROUND" --config node.toml --format "$format" -o "reports/$ROUND.$format.tmp" \
          && mv "reports/$ROUND.$format.tmp" "reports/$ROUND.$format"
      done
      echo "round $ROUND: result verified, reports in reports/"
    fi
  fi
  sleep "$INTERVAL" &
  wait $!
done
