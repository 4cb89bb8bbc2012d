#!/usr/bin/env bash
# Makes the secrets deploy/docker-compose.yml and deploy/kubernetes/ mount, with
# openssl only: the cluster secret, a token file, a CA, a server certificate per
# compose node and one for the Kubernetes pods. Never committed (.gitignore).
#
#   deploy/gen-secrets.sh [OUT_DIR]      # default: deploy/secrets beside this script
#
# It refuses to overwrite an existing set: a new cluster secret or CA locks the
# running nodes out of each other. Delete OUT_DIR first to start over.
#
# Environment: TASKD_K8S_NAMESPACE (default taskd), the namespace whose pod and
# Service names the Kubernetes certificate names; DAYS (default 825), how long the
# server certificates last (the CA: 10 years).
set -euo pipefail

out="${1:-$(cd "$(dirname "$0")" && pwd)/secrets}"
namespace="${TASKD_K8S_NAMESPACE:-taskd}"
days="${DAYS:-825}"
command -v openssl >/dev/null || { echo "gen-secrets.sh: openssl is needed (apt-get install openssl)" >&2; exit 1; }
if [ -e "$out/ca.crt" ]; then
  echo "gen-secrets.sh: $out already holds secrets; delete it first to make new ones" >&2
  exit 1
fi
mkdir -p "$out"
# The directory keeps other users of this machine out. The files themselves are
# readable (0644) because docker compose bind-mounts file secrets with their
# host owner and mode, and taskd runs as uid 10001 in the container.
chmod 0700 "$out"
umask 022
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The cluster secret: every node sends it on peer calls (at least 16 characters).
openssl rand -hex 32 >"$out/cluster-secret"

# Tokens, one `TOKEN ROLE` line each, and each token alone for clients.
: >"$out/tokens"
for role in admin writer reader; do
  token="$(openssl rand -hex 24)"
  printf '%s %s\n' "$token" "$role" >>"$out/tokens"
  printf '%s\n' "$token" >"$out/$role.token"
done

# A CA that signs the servers' certificates (which peers also present).
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
  -keyout "$out/ca.key" -out "$out/ca.crt" -days 3650 -subj "/CN=taskd CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
chmod 0600 "$out/ca.key"

# server_cert NAME SAN… : NAME.key and NAME.crt signed by the CA, for server and
# client use (a node dials its peers with the same certificate).
server_cert() {
  local name="$1"; shift
  local sans
  sans="$(IFS=,; echo "$*")"
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$out/$name.key" -out "$work/$name.csr" -subj "/CN=$name" 2>/dev/null
  cat >"$work/$name.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$sans
EXT
  openssl x509 -req -in "$work/$name.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
    -CAcreateserial -CAserial "$work/ca.srl" -days "$days" -extfile "$work/$name.ext" \
    -out "$out/$name.crt" 2>/dev/null
  chmod 0644 "$out/$name.key"
}

# docker compose: the service names, plus localhost and 127.0.0.1 for the
# health check inside the container and for clients on the published ports.
for n in 1 2 3; do
  server_cert "taskd-$n" "DNS:taskd-$n" DNS:localhost IP:127.0.0.1
done

# Kubernetes: every pod of the StatefulSet behind the headless Service `taskd`,
# the client Service `taskd-client`, and localhost for probes and port-forwards.
server_cert k8s-server \
  "DNS:*.taskd.$namespace.svc.cluster.local" "DNS:taskd.$namespace.svc.cluster.local" \
  "DNS:taskd-client.$namespace.svc.cluster.local" "DNS:taskd-client.$namespace.svc" \
  DNS:taskd-client DNS:localhost IP:127.0.0.1

echo "gen-secrets.sh: wrote $(ls "$out" | tr '\n' ' ')to $out"
