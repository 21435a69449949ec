#!/usr/bin/env bash
# Rebuild everything the zoo ships, from the configs, and the measurements quoted in the README.
# Each step resumes from its checkpoints when run again.
#  1. The first backbone (two one-cycles, 0.8868) and the DeepJSCC chain on it (long recipe, more task
#     epochs, level 1 widened): the shipped DeepJSCC continues from that codec (`deepjscc-retask-L*`,
#     `init_from`), since its pixel stages do not depend on the backbone.
#  2. scripts/cascade.sh: the shipped 200-epoch cutout backbone (0.9027), AECNN r4, BottleNet++ r2,
#     DeepJSCC retask, the option profile, the policies and every result, staged in staging/, then
#     swapped into the package's zoo, results/ and bench/results/.
# About 4.5 h + 2 h (step 1) and 3.5 h (backbone) + 8 h (codecs) + 2 h (profile, policies, results)
# on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${GRL_AECNN_DATA:?set GRL_AECNN_DATA to the folder holding cifar10-jpeg/}"

# Step 1, into the package's zoo (GRL_AECNN_ZOO unset): resnet20-cifar10.yaml starts from the first
# cycle's weights (init_from).
unset GRL_AECNN_ZOO
for name in resnet20-cifar10-cycle1 resnet20-cifar10; do
  run=runs/backbones/$name
  if [ ! -f "$run/card.json" ]; then
    resume=""; [ -f "$run/state.json" ] && resume="--resume"
    grl-aecnn train backbone --config "configs/backbones/$name.yaml" $resume
  fi
done
grl-aecnn zoo add runs/backbones/resnet20-cifar10
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

# Step 2: everything on the shipped backbone, staged, then swapped in (staging/README.md).
scripts/cascade.sh all
scripts/cascade.sh swap
