# shellcheck shell=bash
# The lab's shell environment. Every Bash notebook sources it in its first cell; in a
# JupyterLab terminal, run:  source /work/mlops-pipeline/env.sh
#
# It puts the lab's tools on the PATH, points Ansible and kubectl at the lab's files,
# loads your values from lab.env (written by notebooks 0, 1 and 3; never committed) and
# shares one ssh-agent, holding your key, between every notebook and terminal.
# Sourcing it again is harmless: it changes nothing that is already right.

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export REPO_DIR

# Tools installed by notebook 2 live on the part of the Jupyter disk that survives a restart.
LAB_TOOLS="${LAB_TOOLS:-/work/.local}"
case ":$PATH:" in
  *":$LAB_TOOLS/bin:"*) ;;
  *) export PATH="$LAB_TOOLS/bin:$PATH" ;;
esac
export PYTHONUSERBASE="$LAB_TOOLS"
export ANSIBLE_CONFIG="$REPO_DIR/ansible/ansible.cfg"
# The lab's inventory, plus the GPU node when notebook 3 found one in Terraform's output.
# LAB_INVENTORY replaces both (the kind runs use ansible/inventory-kind.yml).
if [ -n "${LAB_INVENTORY:-}" ]; then
  export ANSIBLE_INVENTORY="$LAB_INVENTORY"
elif [ -f "$REPO_DIR/ansible/inventory-gpu.yml" ]; then
  export ANSIBLE_INVENTORY="$REPO_DIR/ansible/inventory.yml,$REPO_DIR/ansible/inventory-gpu.yml"
else
  export ANSIBLE_INVENTORY="$REPO_DIR/ansible/inventory.yml"
fi
# A pipeline such as `curl ... | jq ...` fails when any of its commands fails.
set -o pipefail

# Your values, typed once. KEY=value lines, read by the Python notebooks too.
LAB_VALUES="${LAB_VALUES:-$REPO_DIR/lab.env}"
if [ -f "$LAB_VALUES" ]; then
  set -a
  # shellcheck source=/dev/null
  . "$LAB_VALUES"
  set +a
fi

# Notebook 5 fetches the cluster's kubeconfig; until then (and on kind) kubectl keeps its default.
if [ -f "$REPO_DIR/ansible/k8s/kubeconfig" ]; then
  export KUBECONFIG="$REPO_DIR/ansible/k8s/kubeconfig"
fi

# One agent at a fixed socket, so a second notebook or a terminal finds the same agent.
PRIVATE_KEY="${PRIVATE_KEY:-/work/.ssh/id_rsa}"
if [ -f "$PRIVATE_KEY" ]; then
  export SSH_AUTH_SOCK="${LAB_AGENT_SOCK:-$HOME/.ssh/gourmetgram-agent.sock}"
  ssh-add -l >/dev/null 2>&1
  if [ $? -eq 2 ]; then  # 2: no agent answers at the socket
    mkdir -p "$(dirname "$SSH_AUTH_SOCK")"
    rm -f "$SSH_AUTH_SOCK"
    eval "$(ssh-agent -a "$SSH_AUTH_SOCK" -s)" >/dev/null
  fi
  if ! ssh-add -l 2>/dev/null | grep -qF "$(ssh-keygen -lf "$PRIVATE_KEY" | awk '{print $2}')"; then
    ssh-add -q "$PRIVATE_KEY"
  fi
else
  echo "No SSH key at $PRIVATE_KEY, so no ssh-agent: Ansible and ssh cannot reach the nodes." \
    "Run notebook 0's \"Upload an SSH key\" cell (it makes the key), then source env.sh again." >&2
fi

echo "Lab environment: REPO_DIR=$REPO_DIR" \
  "FLOATING_IP=${FLOATING_IP:-(not yet: notebook 3)}" \
  "USE_GPU=${USE_GPU:-(not yet: notebook 1)}" \
  "KUBECONFIG=${KUBECONFIG:-(default)}"
