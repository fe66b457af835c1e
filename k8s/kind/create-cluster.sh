#!/usr/bin/env bash
# Create the lab's kind cluster with a local image registry, following kind's
# local-registry guide. Needs docker, kind and kubectl; safe to run again.
#   k8s/kind/create-cluster.sh            # cluster "gourmetgram"
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cluster="gourmetgram"
registry="kind-registry"
# Host port of the registry, for pushing from the host: docker push localhost:5001/...
registry_host_port="${REGISTRY_HOST_PORT:-5001}"
registry_image="registry:3"

# 1. The registry container (on the host: localhost:5001; in the cluster: kind-registry:5000).
if [ "$(docker inspect -f '{{.State.Running}}' "$registry" 2>/dev/null || true)" != "true" ]; then
  docker run -d --restart=always --name "$registry" \
    -p "127.0.0.1:${registry_host_port}:5000" "$registry_image"
fi

# 2. The cluster itself.
if ! kind get clusters | grep -qx "$cluster"; then
  kind create cluster --name "$cluster" --config "$here/kind-config.yaml"
fi

# 3. Let containerd on every node pull kind-registry:5000/... over plain HTTP.
certs_dir="/etc/containerd/certs.d/${registry}:5000"
for node in $(kind get nodes --name "$cluster"); do
  docker exec "$node" mkdir -p "$certs_dir"
  printf '[host."http://%s:5000"]\n' "$registry" |
    docker exec -i "$node" cp /dev/stdin "$certs_dir/hosts.toml"
done

# 4. Put the registry on kind's network so that the name kind-registry resolves there.
if [ "$(docker inspect -f '{{json .NetworkSettings.Networks.kind}}' "$registry")" = "null" ]; then
  docker network connect kind "$registry"
fi

# 5. Advertise the registry to tools that look for it (KEP-1755).
kubectl --context "kind-${cluster}" apply -f - <<YAML
apiVersion: v1
kind: ConfigMap
metadata:
  name: local-registry-hosting
  namespace: kube-public
data:
  localRegistryHosting.v1: |
    host: "localhost:${registry_host_port}"
    hostFromClusterNetwork: "${registry}:5000"
YAML

echo "kind cluster '$cluster' is ready; registry kind-registry:5000 (localhost:${registry_host_port} from here)"
