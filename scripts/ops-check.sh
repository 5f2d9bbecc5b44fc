#!/usr/bin/env bash
# Checks the deployment files with the real tools, as CI does:
#   promtool check/test rules (Debian's prometheus package), promtool check metrics on a
#   live /metrics, kubernetes-validate (PyPI) on the manifests, docker-compose config
#   (Debian's docker-compose) on the compose file. Installs what is missing.
# The containers themselves cannot run here (no Docker engine).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v docker-compose >/dev/null || need_apt+=(docker-compose)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
py=target/tmp/py-tools
[ -d "$py/kubernetes_validate" ] || python3 -m pip install --quiet --target "$py" kubernetes-validate==1.37.0

echo "-- promtool: rules"
promtool check rules deploy/prometheus/rules.yml
(cd deploy/prometheus && promtool test rules rules_test.yml)
promtool check config deploy/prometheus/prometheus.yml

echo "-- kubernetes-validate (strict) on deploy/kubernetes"
PYTHONPATH=$py python3 -m kubernetes_validate --strict \
  deploy/kubernetes/configmap.yaml deploy/kubernetes/secret.yaml deploy/kubernetes/service.yaml \
  deploy/kubernetes/statefulset.yaml deploy/kubernetes/pdb.yaml

echo "-- docker-compose config"
docker-compose -f docker-compose.yml config -q && echo "docker-compose.yml is valid"

echo "-- promtool check metrics on a live /metrics"
bin=${PAIRWATCH_BIN:-target/debug/pairwatch}
[ -x "$bin" ] || cargo build --quiet
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
gport=$(port); hport=$(port); work=$(mktemp -d)
PAIRWATCH__SERVER__GRPC_ADDR=127.0.0.1:$gport PAIRWATCH__SERVER__HTTP_ADDR=127.0.0.1:$hport \
PAIRWATCH__SERVER__DATA_DIR=$work/data "$bin" serve >"$work/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 300); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$hport/readyz')" 2>/dev/null && break
  sleep 0.1
done
"$bin" publish --addr "127.0.0.1:$gport" examples/sextortion_fr.jsonl >/dev/null
python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$hport/metrics').read().decode(), end='')" >"$work/metrics.txt"
promtool check metrics <"$work/metrics.txt"
echo "live metrics pass promtool ($(grep -c '^pairwatch_' "$work/metrics.txt") samples)"
