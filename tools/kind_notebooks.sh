#!/usr/bin/env bash
# Execute the cluster notebooks (6, 7, 8) against a local kind cluster, as CI does.
# Needs Docker and internet access. Leaves the executed notebooks and logs in build/kind/
# and deletes the cluster and the registry at the end, whatever happened.
#   make test-notebooks-kind
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
out="build/kind"
bin="$out/bin"
py=".venv/bin/python"
mkdir -p "$bin"
export PATH="$repo/$bin:$repo/.venv/bin:$PATH"

version() {
  "$py" -c 'import sys, yaml; print(yaml.safe_load(open("versions.yml"))[sys.argv[1]])' "$1"
}

step() {
  echo
  echo "==> $*"
}

# The lab report at the end, as a student writes it (`make report`); the checker's view
# of it is for reading only: kind has no lease, and nobody answered the questions.
report() {
  make --no-print-directory report REPORT_ARGS="--out $out"
  # The doctor exits 1 when it finds a problem, the checker when a rubric line fails.
  make --no-print-directory doctor >"$out/doctor.txt" || true
  "$py" tools/check_report.py "$out/lab-report.json" >"$out/check-report.txt" || true
}

cleanup() {
  if [ ! -f "$out/lab-report.json" ]; then
    step "Writing the lab report of the failed run"
    report || true
  fi
  step "Saving the cluster's state and logs to $out, for a failed run"
  kubectl get all,applications,workflows -A -o wide >"$out/cluster-state.txt" 2>&1 || true
  kind export logs "$out/kind-logs" --name gourmetgram >/dev/null 2>&1 || true
  step "Deleting the kind cluster and the registry"
  kind delete cluster --name gourmetgram || true
  docker rm -f kind-registry || true
}

step "Installing kind, kubectl and the argo CLI (versions from versions.yml)"
curl -fsSLo "$bin/kind" "https://kind.sigs.k8s.io/dl/$(version kind_version)/kind-linux-amd64"
# versions.yml keeps the Kubernetes version as Kubespray wants it, without the "v".
curl -fsSLo "$bin/kubectl" "https://dl.k8s.io/release/v$(version kubernetes_version)/bin/linux/amd64/kubectl"
curl -fsSL "https://github.com/argoproj/argo-workflows/releases/download/$(version argo_workflows_version)/argo-linux-amd64.gz" |
  gunzip >"$bin/argo"
chmod +x "$bin/kind" "$bin/kubectl" "$bin/argo"

# Ubuntu 24.04 stops unprivileged processes from creating user namespaces, which rootless
# BuildKit (the in-cluster image builds) needs; kind's nodes share the host's kernel.
userns=/proc/sys/kernel/apparmor_restrict_unprivileged_userns
if [ -f "$userns" ] && [ "$(cat "$userns")" != 0 ]; then
  step "Allowing unprivileged user namespaces for rootless BuildKit"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
  fi
  $sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0
fi

trap cleanup EXIT
step "Creating the cluster and its registry"
k8s/kind/create-cluster.sh

step "Installing Argo CD, Argo Workflows and Argo Events with the lab's playbook"
# REPO_URL and REPO_REVISION, when set (CI sets them to this commit), replace versions.yml's
# repository for Argo CD and the image builds (ansible/group_vars/all.yml).
ansible-playbook -i ansible/inventory-kind.yml ansible/post_k8s/post_k8s_configure.yml

step "Preparing the notebooks with papermill (parameters and values for kind)"
# env.sh reads the student's values from LAB_VALUES and the inventory from LAB_INVENTORY:
# on kind, the app and the UIs are on localhost, and Ansible uses the kind inventory.
export LAB_VALUES="$repo/$out/lab.env"
export LAB_INVENTORY="$repo/ansible/inventory-kind.yml"
"$py" tools/lab_env.py set FLOATING_IP=localhost USE_GPU=false
for name in 6_configure_platform 7_lifecycle_part_1 8_lifecycle_part_2; do
  papermill --prepare-only "notebooks/$name.ipynb" "$out/$name.ipynb" -p REPO_DIR "$repo"
done

step "Executing them with nbval (cells tagged chameleon are skipped)"
# One cell of notebook 6 waits for two builds in turn, each up to initial_build_timeout_s
# (ansible/group_vars/all.yml); a test keeps this cell timeout above both waits.
LAB_HAS_CLUSTER=1 pytest --nbval-lax -p tests.nbval_gate -o addopts=-ra \
  --nbval-cell-timeout=7500 --nbval-save-dir "$out/executed" --junitxml "$out/junit.xml" \
  "$out"/6_configure_platform.ipynb "$out"/7_lifecycle_part_1.ipynb "$out"/8_lifecycle_part_2.ipynb \
  2>&1 | tee "$out/nbval.log"

step "Writing the lab report (make report) and the doctor's and the checker's views of it"
report
cat "$out/doctor.txt" "$out/check-report.txt"
