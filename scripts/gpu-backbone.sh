#!/usr/bin/env bash
# Optional: train (or finish) a backbone run on a lent GPU machine, which starts bare and receives
# only this working tree plus up to 64 MiB of carried, git-ignored paths (docs/reproduce.md).
#
#   scripts/gpu-backbone.sh prepare          # here: pack what the GPU machine lacks into .gpu-carry/
#   scripts/gpu-backbone.sh train CONFIG     # there: unpack, train with --device cuda, copy the run to $OUT
#
# prepare: the CIFAR-10 JPEG zips, xz-compressed (their 50,000 near-identical JPEG headers shrink
# 51 MB to about 16 MB), and wheels of the pure-Python packages the training imports and that
# machine lacks (pydantic and its helpers, for its Python 3.12). train resumes the config's
# output_dir when it holds a checkpoint (carry that folder too: a CPU checkpoint resumes on the
# GPU), and copies the run's files to $OUT; copy them back into the same folder here.
set -euo pipefail
carry=.gpu-carry

case "${1:-}" in
  prepare)
    : "${GRL_AECNN_DATA:?set GRL_AECNN_DATA to the folder holding cifar10-jpeg/}"
    grep -qx "/$carry/" .git/info/exclude 2>/dev/null || echo "/$carry/" >> .git/info/exclude
    mkdir -p "$carry/data" "$carry/whl"
    for split in train test; do
      xz -9 -T1 -c "$GRL_AECNN_DATA/cifar10-jpeg/$split.zip" > "$carry/data/$split.zip.xz"
    done
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d "$carry/whl" "pydantic==$(python3 -c 'import pydantic; print(pydantic.VERSION)')" \
      "pydantic-core==$(python3 -c 'import pydantic_core; print(pydantic_core.__version__)')" \
      annotated-types typing-inspection
    du -sh "$carry"
    ;;
  train)
    config=${2:?usage: scripts/gpu-backbone.sh train CONFIG}
    : "${OUT:?run this on the GPU machine, where OUT is set}"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      "$carry"/whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD/src GRL_AECNN_DATA=/tmp/data PYTHONUNBUFFERED=1
    mkdir -p /tmp/data/cifar10-jpeg
    for split in train test; do
      python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
        "$carry/data/$split.zip.xz" "/tmp/data/cifar10-jpeg/$split.zip"
    done
    run=$(python3 -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['output_dir'])" "$config")
    resume=""
    [ -f "$run/state.json" ] && resume="--resume"
    python3 -c "from grl_aecnn.cli import app; app()" train backbone --config "$config" --device cuda $resume \
      2>&1 | tee "$OUT/train.log"
    cp "$run"/*.json "$run"/*.safetensors "$OUT"/
    ;;
  *)
    echo "usage: $0 prepare | train CONFIG" >&2
    exit 2
    ;;
esac
