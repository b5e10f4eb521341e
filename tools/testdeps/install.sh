#!/usr/bin/env bash
# Installs the independent clients and servers that the integration tests speak
# to: dig and dnsperf (DNS), coturn (turnutils_uclient, turnserver), nginx (the
# example config is checked with nginx -t), Chromium (browser test), iproute2
# (network namespaces for the WAN emulator), PostgreSQL's server binaries
# (core/clustertest runs its own servers from /usr/lib/postgresql/*/bin),
# systemd-analyze (the unit file is verified), curl and openssl (the signed
# request recipe), and the npm packages of the
# Node.js protocol tests. It is idempotent and quick when all is present.
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
for pair in dig:bind9-dnsutils dnsperf:dnsperf turnutils_uclient:coturn nginx:nginx-light \
            chromium:chromium ip:iproute2 systemd-analyze:systemd \
            curl:curl openssl:openssl; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need+=("$pkg")
done
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "testdeps: need root to install: ${need[*]}" >&2
    exit 1
  fi
  echo "testdeps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# coturn's package may start a turnserver on 3478; the tests start their own.
if command -v systemctl >/dev/null 2>&1; then systemctl stop coturn 2>/dev/null || true; fi
pkill -x turnserver 2>/dev/null || true

# Node.js test clients (official socket.io-client and friends), pinned by
# package-lock.json files next to each package.json.
for dir in $(git ls-files '*package.json' | xargs -r -n1 dirname); do
  if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
    echo "testdeps: npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done
