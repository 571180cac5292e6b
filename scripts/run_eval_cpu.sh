#!/usr/bin/env bash
# Evaluate a checkpoint (or every .ckpt of a folder) on the CPU; runs in the foreground.
# `sh script.sh` (how the upstream READMEs run it) re-runs this script under bash.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set +o posix
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ZOO_USAGE="usage: bash scripts/run_eval_cpu.sh CONFIG DATA_DIR CHECKPOINT [--key=value ...]

  CONFIG      the config the checkpoint was trained with, or its name in config/
  DATA_DIR    dataset root (its evaluation split is used)
  CHECKPOINT  .ckpt file, or a folder of them

Evaluate a checkpoint (or every .ckpt of a folder) on the CPU; runs in the foreground.

$ZOO_HELP_KEYS
$ZOO_HELP_ENV

The run folder gets console.log, eval_results.json, config.yaml and env.txt.

example:
  bash scripts/run_eval_cpu.sh config/demo.yaml demo_data/cifar10 outputs/<run>/checkpoints/best.ckpt"

zoo_single_main eval CPU "$@"
