#!/usr/bin/env bash
# Rebuild everything the zoo ships, from the configs: the ResNet-20 backbone, then every AECNN level,
# then the BottleNet++ and DeepJSCC baselines, then the measurements quoted in the README. Each step
# resumes from its checkpoints when run again.
# About 4.5 h (two backbone cycles) + 6.5 h (AECNN, of which about 4 h for the own heads of levels 1 and
# 4-7 and level 5's rate stage) + 2 h (baselines) on 2 CPU cores.
set -euo pipefail
: "${GRL_AECNN_DATA:?set GRL_AECNN_DATA to the folder holding cifar10-jpeg/}"
mkdir -p results

# Two one-cycles: resnet20-cifar10.yaml starts from the first cycle's weights (init_from).
for name in resnet20-cifar10-cycle1 resnet20-cifar10; do
  run=runs/backbones/$name
  if [ ! -f "$run/card.json" ]; then
    resume=""; [ -f "$run/state.json" ] && resume="--resume"
    grl-aecnn train backbone --config "configs/backbones/$name.yaml" $resume
  fi
done
backbone_run=runs/backbones/resnet20-cifar10
grl-aecnn zoo add "$backbone_run"
grl-aecnn eval backbone --model resnet20-cifar10 --json results/backbone-resnet20-cifar10.json

# The shipped third round (prune-aware head, docs/aecnn.md): the first config also runs stages 1-1b,
# shared by every level. Level 5 (the 256x operating point) first.
aecnn_run=runs/codecs/aecnn-resnet20-cifar10-r3-e10
for level in 5 4 6 3 2 1 7 8; do
  grl-aecnn train codec --config "configs/codecs/aecnn-r3-L$level.yaml"
done
grl-aecnn codec ship --codec aecnn --base-dir "$aecnn_run"
grl-aecnn codec eval --codec aecnn --model resnet20-cifar10 --json results/codec-aecnn-resnet20-cifar10.json

# Learned baselines on the same backbone (issue 4). BottleNet++ rates share one feature cache; every
# rate and ratio resumes from its checkpoints. Rate 1 and ratio 1 (the highest) come first.
for rate in 1 3 5 2 4; do
  grl-aecnn train codec --config "configs/codecs/bottlenetpp-R$rate.yaml"
done
grl-aecnn codec ship --codec bottlenetpp
grl-aecnn codec eval --codec bottlenetpp --model resnet20-cifar10 --limit 1000 \
  --json results/codec-bottlenetpp-resnet20-cifar10.json
for level in 1 2 3; do
  grl-aecnn train codec --config "configs/codecs/deepjscc-L$level.yaml"
done
grl-aecnn codec ship --codec deepjscc --base-dir runs/codecs/deepjscc-resnet20-cifar10-long
# More task epochs, starting from the levels just shipped (configs' init_from), then shipped again.
for level in 1 2 3; do
  grl-aecnn train codec --config "configs/codecs/deepjscc-more-L$level.yaml"
done
grl-aecnn codec ship --codec deepjscc --base-dir runs/codecs/deepjscc-resnet20-cifar10-more
# Ratio 1 widened to width 64, warm-started exactly from the level just shipped; ratios 2-3 ship as they are.
grl-aecnn train codec --config configs/codecs/deepjscc-wide-L1.yaml
cp -r runs/codecs/deepjscc-resnet20-cifar10-more/level00{2,3} runs/codecs/deepjscc-resnet20-cifar10-wide/
grl-aecnn codec ship --codec deepjscc --base-dir runs/codecs/deepjscc-resnet20-cifar10-wide
grl-aecnn codec eval-channel --model resnet20-cifar10 --json results/codec-deepjscc-resnet20-cifar10.json
