#!/usr/bin/env bash
# Get the default dataset, Fashion-MNIST, onto this machine (run by `make data`; idempotent).
# Order: a copy already present; Debian's dataset-fashion-mnist package (as root, or with
# passwordless sudo); torchvision's download. Then vggbook verifies every file by checksum.
set -euo pipefail
PY=${1:-.venv/bin/python}
files="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"
tried=()

has_all() { for f in $files; do [ -f "$1/$f" ] || return 1; done; }

found=""
for dir in data/fashion-mnist ${VGGBOOK_DATA:+"$VGGBOOK_DATA/fashion-mnist" "$VGGBOOK_DATA"} /usr/share/datasets/fashion-mnist; do
  if has_all "$dir"; then found=$dir; break; fi
  tried+=("$dir")
done

if [ -z "$found" ] && command -v apt-get >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || { sudo -n true 2>/dev/null && sudo="sudo -n"; }
  if [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; then
    echo "fetch_data: installing Debian's dataset-fashion-mnist"
    if $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
       || { $sudo apt-get update -qq >/dev/null 2>&1 && $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; }; then
      found=/usr/share/datasets/fashion-mnist
    else
      tried+=("apt-get install dataset-fashion-mnist")
    fi
  fi
fi

if [ -z "$found" ]; then
  echo "fetch_data: downloading Fashion-MNIST through torchvision into data/fashion-mnist"
  if "$PY" -c "from vggbook.data import load_dataset as l; l('fashion-mnist', 'train', download=True); l('fashion-mnist', 'val', download=True)"; then
    found=data/fashion-mnist
  else
    tried+=("torchvision download")
  fi
fi

if [ -z "$found" ]; then
  echo "fetch_data: Fashion-MNIST not found; tried: ${tried[*]}." >&2
  echo "fetch_data: copy the four files ($files) into data/fashion-mnist/ and run 'make data' again." >&2
  exit 1
fi
"$PY" -c "from vggbook.data import load_dataset as l; [l('fashion-mnist', s) for s in ('train', 'val')]"
echo "fetch_data: Fashion-MNIST found in $found, checksums verified"
