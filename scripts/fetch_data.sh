#!/usr/bin/env bash
# Get the default dataset, Fashion-MNIST, onto this machine (run by `make data`; idempotent).
# Order: a copy already present; Debian's dataset-fashion-mnist package (as root, or with
# passwordless sudo); torchvision's download. Then vggbook verifies every file by checksum.
# Usage: bash scripts/fetch_data.sh [PYTHON]   (default .venv/bin/python)
set -euo pipefail
PY=${1:-.venv/bin/python}
case $PY in /*) ;; */*) PY="$PWD/$PY" ;; esac  # keep a relative interpreter path valid after cd
cd "$(dirname "$0")/.."  # the project root: data/ and vggbook/ are relative to it
files="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"
debian=/usr/share/datasets/fashion-mnist
tried=()

has_all() { for f in $files; do [ -f "$1/$f" ] || return 1; done; }
last_line() { tail -n 1 "$1" | cut -c 1-300; }
give_up() {  # what was tried, and how to place the files by hand
  local IFS=";"
  echo "fetch_data: no usable Fashion-MNIST; tried:${tried[*]/#/ }" >&2
  echo "fetch_data: by hand: copy the four files ($files) into data/fashion-mnist/" \
    "(or a folder named by \$VGGBOOK_DATA) and run 'make data' again" >&2
  exit 1
}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# The same search order as vggbook.data.fashion_mnist_dirs.
found=""
for dir in data/fashion-mnist ${VGGBOOK_DATA:+"$VGGBOOK_DATA/fashion-mnist" "$VGGBOOK_DATA"} "$debian"; do
  if has_all "$dir"; then found=$dir; break; fi
  tried+=("a copy in $dir")
done
[ -z "$found" ] || echo "fetch_data: Fashion-MNIST found in $found"

if [ -z "$found" ] && command -v apt-get >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || { sudo -n true 2>/dev/null && sudo="sudo -n"; }
  if [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; then
    echo "fetch_data: installing Debian's dataset-fashion-mnist"
    run_apt() { $sudo env DEBIAN_FRONTEND=noninteractive apt-get "$@" >"$log" 2>&1; }
    if { run_apt install -y -qq dataset-fashion-mnist || { run_apt update -qq && run_apt install -y -qq dataset-fashion-mnist; }; } \
       && has_all "$debian"; then
      found=$debian
    else
      tried+=("apt-get install dataset-fashion-mnist ($(last_line "$log"))")
    fi
  else
    tried+=("apt-get install dataset-fashion-mnist (skipped: needs root or passwordless sudo)")
  fi
fi

if [ -z "$found" ]; then
  echo "fetch_data: downloading Fashion-MNIST through torchvision into data/fashion-mnist"
  if "$PY" -c "from vggbook.data import load_dataset as l; l('fashion-mnist', 'train', download=True); l('fashion-mnist', 'test', download=True)" >"$log" 2>&1; then
    found=data/fashion-mnist
  else
    tried+=("torchvision download ($(last_line "$log"))")
  fi
fi

[ -n "$found" ] || give_up
verify="from vggbook.data import load_dataset as l; print(*(len(l('fashion-mnist', s)) for s in ('train', 'test')))"
if ! counts=$("$PY" -c "$verify" 2>"$log"); then
  tried+=("verifying the copy in $found: $(last_line "$log")")
  give_up
fi
read -r n_train n_test <<<"$counts"
echo "fetch_data: checksums verified: $n_train training and $n_test test images"
