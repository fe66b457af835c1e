#!/usr/bin/env bash
# Install the Debian packages that `make test` needs and pip cannot provide:
# - chromium: the book test loads the built site headless;
# - golang-go + golang-github-antonmedv-expr-dev: the expr engine that Argo compiles
#   `{{= ... }}` expressions with, built offline into a checker (tests/exprcheck/);
# - golang-github-knetic-govaluate-dev: govaluate, which decides Argo's `when` conditions
#   (tests/whencheck/, used by the story test);
# - prometheus: a real server that the monitoring tests scrape the app with;
# - busybox + docker-registry: the cluster's image-tag step runs in busybox and asks a
#   registry; tests/test_image_tag.py runs it the same way against a real registry.
set -euo pipefail

packages=(chromium golang-go golang-github-antonmedv-expr-dev golang-github-knetic-govaluate-dev prometheus busybox docker-registry jq)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
echo "Installing Debian packages: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
