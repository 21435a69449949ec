#!/usr/bin/env bash
# Train a backbone that meets issue 2's 0.900 and retrain everything that stands on it into the zoo
# overlay staging/zoo (GRL_AECNN_ZOO), without touching the shipped zoo: staging/README.md.
#   [BACKBONE_CONFIG=configs/backbones/NAME.yaml] scripts/cascade.sh [backbone|aecnn|bottlenetpp|deepjscc|profile|all]
# Every step skips what is finished (a level with its level.json, a codec or profile in staging/zoo) and
# resumes the rest from its checkpoints; levels train two at a time (their configs use one thread each).
# Each output folder runs/KIND/NAME (a config's output_dir) is a link to staging/runs/KIND/NAME,
# whose finished outputs are committed (stage checkpoints and caches are ignored): commit staging/ after
# each step, so that they survive a lost runs/. Logs: runs/cascade/*.log.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${GRL_AECNN_DATA:?set GRL_AECNN_DATA to the folder holding cifar10-jpeg/}"
export GRL_AECNN_ZOO=${GRL_AECNN_ZOO:-staging/zoo}
mkdir -p "$GRL_AECNN_ZOO" runs/cascade

staged() {  # staged runs/KIND/NAME: make it a link into staging/runs/KIND/NAME (on first use); echo it
  local run=$1 keep=staging/$1
  mkdir -p "$keep" "$(dirname "$run")"
  if [ ! -L "$run" ]; then
    [ -e "$run" ] && { echo "$run exists and is not a link to $keep: move its contents there first" >&2; exit 1; }
    ln -s "../../$keep" "$run"
  fi
  echo "$run"
}

# Train or resume BACKBONE_CONFIG (its latest checkpoint lands in staging/runs/backbones/, so commit
# staging/ at a session's end and a later session resumes it), then stage it if it meets the 0.900 target.
backbone() {
  local cfg=${BACKBONE_CONFIG:-configs/backbones/resnet20-cifar10-cutout.yaml} run
  [ -f "$GRL_AECNN_ZOO/resnet20-cifar10.json" ] && return
  run=$(staged "$(python -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['output_dir'])" "$cfg")")
  if [ ! -f "$run/card.json" ]; then
    local resume=(); [ -f "$run/state.json" ] && resume=(--resume)
    grl-aecnn train backbone --config "$cfg" "${resume[@]}" > "runs/cascade/backbone.log" 2>&1
  fi
  python -c "import json, sys; top1 = json.load(open(sys.argv[1]))['top1']; sys.exit(f'{sys.argv[1]}: top-1 {top1} < 0.900' if top1 < 0.9 else 0)" "$run/card.json"
  grl-aecnn zoo add "$run"
}

# train_levels OUT_DIR CONFIG...: the first unfinished config alone on both cores (it trains the
# stages its levels share), then the other unfinished ones two at a time.
train_levels() {
  local out=$1; shift
  local pending=()
  for cfg in "$@"; do
    local level; level=$(printf 'level%03d' "${cfg##*[LR]}")
    [ -f "$out/$level/level.json" ] || pending+=("$cfg")
  done
  [ ${#pending[@]} -eq 0 ] && return
  local first=${pending[0]}
  grl-aecnn train codec --config "configs/codecs/$first.yaml" --threads 2 > "runs/cascade/$first.log" 2>&1
  printf '%s\n' "${pending[@]:1}" | xargs -r -P 2 -I{} sh -c \
    'grl-aecnn train codec --config configs/codecs/{}.yaml > runs/cascade/{}.log 2>&1'
}

ship() {  # ship CODEC OUT_DIR
  [ -f "$GRL_AECNN_ZOO/$1-resnet20-cifar10.json" ] || grl-aecnn codec ship --codec "$1" --base-dir "$2"
}

aecnn() {
  local out; out=$(staged runs/codecs/aecnn-resnet20-cifar10-r4)
  # Level 2 first: no own head, so the shared stages (1, 1a, 1b, 2) finish soonest.
  train_levels "$out" aecnn-r4-L2 aecnn-r4-L5 aecnn-r4-L4 aecnn-r4-L6 aecnn-r4-L3 aecnn-r4-L1 aecnn-r4-L7 aecnn-r4-L8
  ship aecnn "$out"
}

bottlenetpp() {
  local out; out=$(staged runs/codecs/bottlenetpp-resnet20-cifar10-r2)
  train_levels "$out" bottlenetpp-r2-R1 bottlenetpp-r2-R3 bottlenetpp-r2-R5 bottlenetpp-r2-R2 bottlenetpp-r2-R4
  ship bottlenetpp "$out"
}

deepjscc() {
  local out; out=$(staged runs/codecs/deepjscc-resnet20-cifar10-retask)
  train_levels "$out" deepjscc-retask-L1 deepjscc-retask-L2 deepjscc-retask-L3
  ship deepjscc "$out"
}

profile() {  # alone on the machine: it times every option (device and server latency)
  [ -f "$GRL_AECNN_ZOO/profile-resnet20-cifar10.json" ] ||
    grl-aecnn profile build --config configs/profiles/resnet20-cifar10.yaml  # into the overlay
}

case "${1:-all}" in
  backbone|aecnn|bottlenetpp|deepjscc|profile) "$1" ;;
  all) backbone; aecnn; bottlenetpp; deepjscc; profile ;;
  *) echo "usage: $0 [backbone|aecnn|bottlenetpp|deepjscc|profile|all]" >&2; exit 2 ;;
esac
