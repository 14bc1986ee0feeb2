#!/usr/bin/env bash
# Start a throwaway etcd for the fleet tests: loopback only, free ports, data in DIR (created if missing).
#   scripts/start-etcd.sh DIR   → prints HOST:PORT (the client endpoint) on stdout once etcd is healthy;
#                                 DIR/pid holds etcd's pid and DIR/etcd.log its log.
# Then: LIVEPATCH_TEST_ETCD=$(...) node scripts/run-tests.js fleet ; kill "$(cat DIR/pid)"; rm -rf DIR
# With ETCD_CERT and ETCD_KEY (PEM files) set, etcd serves its clients TLS (https) with them.
set -euo pipefail
dir=${1:?usage: scripts/start-etcd.sh DIR}
mkdir -p "$dir"
command -v etcd >/dev/null || { echo "etcd is not installed (Debian: apt-get install -y etcd-server)" >&2; exit 1; }
# Two free loopback ports, chosen by the kernel.
read -r client peer < <(node -e '
const net = require("node:net");
const a = net.createServer().listen(0, "127.0.0.1", () => {
  const b = net.createServer().listen(0, "127.0.0.1", () => {
    console.log(a.address().port, b.address().port);
    a.close(); b.close();
  });
});')
scheme=http
tls=()
if [ -n "${ETCD_CERT:-}" ]; then
  scheme=https
  tls=(--cert-file "$ETCD_CERT" --key-file "${ETCD_KEY:?ETCD_CERT needs ETCD_KEY}")
fi
etcd --name lptest --data-dir "$dir/data" "${tls[@]}" \
  --listen-client-urls "$scheme://127.0.0.1:$client" --advertise-client-urls "$scheme://127.0.0.1:$client" \
  --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
  --initial-cluster "lptest=http://127.0.0.1:$peer" >"$dir/etcd.log" 2>&1 &
echo $! >"$dir/pid"
for _ in $(seq 1 100); do
  # The health check only asks whether etcd answers: it does not verify the (test) certificate.
  if NODE_TLS_REJECT_UNAUTHORIZED=0 node -e 'fetch(process.argv[1]).then(r => r.json()).then(j => process.exit(j.health === "true" ? 0 : 1), () => process.exit(1))' "$scheme://127.0.0.1:$client/health" 2>/dev/null; then
    echo "127.0.0.1:$client"
    exit 0
  fi
  kill -0 "$(cat "$dir/pid")" 2>/dev/null || { echo "etcd exited:" >&2; tail -20 "$dir/etcd.log" >&2; exit 1; }
  sleep 0.1
done
echo "etcd did not become healthy in 10 s:" >&2
tail -20 "$dir/etcd.log" >&2
kill "$(cat "$dir/pid")" 2>/dev/null || true
exit 1
