#!/usr/bin/env bash
# Rebuild everything the zoo ships, from the configs: the ResNet-20 backbone, then every AECNN level,
# then the BottleNet++ and DeepJSCC baselines, then the measurements quoted in the README. Each step
# resumes from its checkpoints when run again.
# About 1.5 h (backbone) + 40 min (AECNN) on 2 CPU cores.
set -euo pipefail
: "${GRL_AECNN_DATA:?set GRL_AECNN_DATA to the folder holding cifar10-jpeg/}"
mkdir -p results

backbone_run=runs/backbones/resnet20-cifar10
if [ ! -f "$backbone_run/card.json" ]; then
  resume=""; [ -f "$backbone_run/state.json" ] && resume="--resume"
  grl-aecnn train backbone --config configs/backbones/resnet20-cifar10.yaml $resume
fi
grl-aecnn zoo add "$backbone_run"
grl-aecnn eval backbone --model resnet20-cifar10 --json results/backbone-resnet20-cifar10.json

# Level 5 and 6 (around the 256x operating point) first, so a time-boxed run gets the most important level early.
for level in 6 5 7 4 3 8 2 1; do
  grl-aecnn train codec --config "configs/codecs/aecnn-L$level.yaml"
  grl-aecnn codec ship --base-dir runs/codecs/aecnn-resnet20-cifar10 --name aecnn-resnet20-cifar10
done
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
grl-aecnn codec ship --codec deepjscc
grl-aecnn codec eval-channel --model resnet20-cifar10 --limit 1000 --json results/codec-deepjscc-resnet20-cifar10.json
