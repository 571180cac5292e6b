#!/usr/bin/env bash
# Train on one NVIDIA GPU.
# `sh script.sh` (how the upstream READMEs run it) re-runs this script under bash.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set +o posix
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ZOO_USAGE="usage: bash scripts/run_standalone_train_gpu.sh CONFIG DATA_DIR [DEVICE_ID] [--key=value ...]

  CONFIG      config file, or its name in config/ (e.g. mobilenetv1_imagenet)
  DATA_DIR    dataset root (e.g. /data/imagenet holding train/ and val/)
  DEVICE_ID   GPU index (default: env DEVICE_ID, else 0)

Train on one NVIDIA GPU.

$ZOO_HELP_KEYS
$ZOO_HELP_BACKGROUND
$ZOO_HELP_ENV

The run folder gets console.log (all output), train.log, config.yaml, env.txt and checkpoints/.

example:
  bash scripts/run_standalone_train_gpu.sh config/mobilenetv1_imagenet.yaml /data/imagenet 0 --batch_size=128"

zoo_single_main train GPU "$@"
