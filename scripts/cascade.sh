#!/usr/bin/env bash
# Train a backbone that meets issue 2's 0.900 and retrain everything that stands on it into the zoo
# overlay staging/zoo (GRL_AECNN_ZOO), without touching the shipped zoo: staging/README.md.
#   [BACKBONE_CONFIG=configs/backbones/NAME.yaml] scripts/cascade.sh [backbone|aecnn|bottlenetpp|deepjscc|profile|policies|results|quality|all|swap]
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

level_dir() { printf 'level%03d' "${1##*[LR]}"; }  # level_dir aecnn-r4-L5 -> level005

# train_levels OUT_DIR CONFIG...: the first unfinished config alone on both cores (it trains the
# stages its levels share), then the other unfinished ones two at a time.
# Fails unless every level is finished at the end (a level reopened meanwhile is not shipped without it).
train_levels() {
  local out=$1; shift
  local pending=() cfg
  for cfg in "$@"; do
    [ -f "$out/$(level_dir "$cfg")/level.json" ] || pending+=("$cfg")
  done
  [ ${#pending[@]} -eq 0 ] && return
  local first=${pending[0]}
  grl-aecnn train codec --config "configs/codecs/$first.yaml" --threads 2 > "runs/cascade/$first.log" 2>&1
  printf '%s\n' "${pending[@]:1}" | xargs -r -P 2 -I{} sh -c \
    'grl-aecnn train codec --config configs/codecs/{}.yaml > runs/cascade/{}.log 2>&1'
  for cfg in "$@"; do
    [ -f "$out/$(level_dir "$cfg")/level.json" ] ||
      { echo "$out/$(level_dir "$cfg") is not finished: rerun this step (runs/cascade/$cfg.log)" >&2; exit 1; }
  done
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

DROO_VARIANTS=("" -n5 -n20 -n40 -m1 -m2 -m4 -m6)  # DROO's network fixes N and M: one per N and per M
EXPERIMENTS=(default n-md n-es deadline bandwidth csi-error es-volatility probe-cell-size)  # configs/experiments/
ZOO_NAMES=(resnet20-cifar10 {aecnn,bottlenetpp,deepjscc,profile}-resnet20-cifar10
           grl-default grl-bottlenetpp-default grl-deepjscc-default "${DROO_VARIANTS[@]/#/droo-default}")

# policy_run NAME ARG...: train (or resume) `train policy ARG...` into runs/policies/NAME, unless finished.
policy_run() {
  local name=$1 run resume=(); shift
  run=$(staged "runs/policies/$name")
  [ -f "$run/card.json" ] && return
  [ -f "$run/checkpoint.json" ] && resume=(--resume)
  grl-aecnn train policy "$@" --out "$run" "${resume[@]}" > "runs/cascade/policy-$name.log" 2>&1
}
export -f policy_run staged

# The GRL agents (five seeds each, the best on validation layouts shipped) and the DROO-AECNN networks
# (one per N and per M) on the staged profile, as docs/reproduce.md; two runs at a time (one thread each).
# The selections' JSON lands in staging/results/policies/ (moved into results/ at the swap).
policies() {
  local runs=() p s v a
  for p in grl grl-bottlenetpp grl-deepjscc; do
    for s in 0 1 2 3 4; do runs+=("$p-s$s --policy $p --slots 5000 --seed $s"); done
  done
  for v in "${DROO_VARIANTS[@]}"; do  # -nN: --n-md N, -mM: --n-es M
    case $v in -n*) a=(--n-md "${v#-n}") ;; -m*) a=(--n-es "${v#-m}") ;; *) a=() ;; esac
    runs+=("droo$v --policy droo --slots 3000${a[*]:+ ${a[*]}}")  # no trailing blank: xargs -L would join lines
  done
  printf '%s\n' "${runs[@]}" | xargs -P 2 -L 1 bash -c 'policy_run "$@"' policy_run
  mkdir -p staging/results/policies
  for p in grl grl-bottlenetpp grl-deepjscc; do
    [ -f "$GRL_AECNN_ZOO/$p-default.json" ] && continue
    grl-aecnn select-policy $(for s in 0 1 2 3 4; do echo --run "runs/policies/$p-s$s"; done) \
      --json "staging/results/policies/select-$p.json" --ship
  done
  for v in "${DROO_VARIANTS[@]}"; do
    [ -f "$GRL_AECNN_ZOO/droo-default$v.json" ] || grl-aecnn zoo add "runs/policies/droo$v"
  done
}

# Every committed result of docs/reproduce.md ("Measurements") again, on the staged models, into
# staging/results/ (moved into results/ at the swap); each skipped once written, `evaluate` resumes.
results() {
  local r=staging/results m=resnet20-cifar10 e
  mkdir -p "$r"
  [ -f "$r/backbone-$m.json" ] || grl-aecnn eval backbone --model "$m" --json "$r/backbone-$m.json"
  [ -f "$r/codec-aecnn-$m.json" ] || grl-aecnn codec eval --codec aecnn --model "$m" --json "$r/codec-aecnn-$m.json"
  [ -f "$r/codec-deepjscc-$m.json" ] || grl-aecnn codec eval-channel --model "$m" --json "$r/codec-deepjscc-$m.json"
  [ -f "$r/codec-compare-$m.json" ] ||
    grl-aecnn codec compare --profile "$GRL_AECNN_ZOO/profile-$m.json" --json "$r/codec-compare-$m.json"
  [ -f "$r/demo/summary.json" ] || grl-aecnn demo --output "$r/demo"
  for e in "${EXPERIMENTS[@]}"; do
    [ -f "$r/experiments/$e/summary.json" ] ||
      grl-aecnn evaluate --config "configs/experiments/$e.yaml" --output "$r/experiments/$e" > "runs/cascade/evaluate-$e.log" 2>&1
  done
}

# The policy-quality measurements of docs/policies.md on the staged agent and profile (3 min): GRL-AECNN
# against exhaustive search on small instances (into staging/bench/, moved into bench/results/ at the swap),
# and the shipped agent over each paper-style action set, local + one codec (staging/results/policies/).
quality() {
  local r=staging/results/policies c
  mkdir -p staging/bench "$r"
  [ -f staging/bench/policy-quality-real.json ] ||
    python scripts/policy_quality.py --n-md 5 --n-es 2 --options aecnn:L2 aecnn:L4 aecnn:L6 \
      --episodes 10 --slots 100 --json staging/bench/policy-quality-real.json
  for c in aecnn bottlenetpp deepjscc; do
    [ -f "$r/action-set-$c.json" ] ||
      python scripts/policy_quality.py --n-md 10 --n-es 3 --options "$c:" --policies grl --episodes 3 \
        --slots 1000 --seed 0 --json "$r/action-set-$c.json"
  done
}

# Once every step is done: the staged models and results replace the shipped ones, and staging/ keeps
# only its README (the training outputs stay in git history). Left by hand (staging/README.md): the
# golden files, the README's and docs' figures.
swap() {
  local name missing=()
  for name in "${ZOO_NAMES[@]}"; do
    [ -f "$GRL_AECNN_ZOO/$name.json" ] || missing+=("$GRL_AECNN_ZOO/$name.json")
  done
  for name in backbone codec-aecnn codec-deepjscc codec-compare; do
    [ -f "staging/results/$name-resnet20-cifar10.json" ] || missing+=("staging/results/$name-resnet20-cifar10.json")
  done
  for name in demo "${EXPERIMENTS[@]/#/experiments/}"; do
    [ -f "staging/results/$name/summary.json" ] || missing+=("staging/results/$name/summary.json")
  done
  for name in staging/bench/policy-quality-real staging/results/policies/action-set-{aecnn,bottlenetpp,deepjscc}; do
    [ -f "$name.json" ] || missing+=("$name.json")
  done
  [ ${#missing[@]} -eq 0 ] || { printf 'swap: not staged yet: %s\n' "${missing[@]}" >&2; exit 1; }
  mv -f "$GRL_AECNN_ZOO"/* src/grl_aecnn/zoo/weights/
  for name in demo "${EXPERIMENTS[@]/#/experiments/}"; do  # whole folders: no stale figure survives
    rm -rf "results/$name"
    sed -i 's#^output_dir: staging/results/#output_dir: results/#' "staging/results/$name/config.yaml"
  done
  cp -a staging/results/. results/
  mv -f staging/bench/* bench/results/
  rm -rf "$GRL_AECNN_ZOO" staging/results staging/runs staging/bench
  find runs -maxdepth 2 -type l -lname '*staging/*' -delete  # the links into staging/runs
}

case "${1:-all}" in
  backbone|aecnn|bottlenetpp|deepjscc|profile|policies|results|quality|swap) "$1" ;;
  all) backbone; aecnn; bottlenetpp; deepjscc; profile; policies; results; quality ;;
  *) echo "usage: $0 [backbone|aecnn|bottlenetpp|deepjscc|profile|policies|results|quality|all|swap]" >&2; exit 2 ;;
esac
