#!/usr/bin/env bash
# Train on the CPU.
# `sh script.sh` (how the upstream READMEs run it) re-runs this script under bash.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set +o posix
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ZOO_USAGE="usage: bash scripts/run_train_cpu.sh CONFIG DATA_DIR [--key=value ...]

  CONFIG      config file, or its name in config/ (e.g. demo, tinydarknet_cifar10)
  DATA_DIR    dataset root (e.g. demo_data/cifar10)

Train on the CPU.

$ZOO_HELP_KEYS
$ZOO_HELP_BACKGROUND
$ZOO_HELP_ENV

The run folder gets console.log (all output), train.log, config.yaml, env.txt and checkpoints/.

example:
  bash scripts/run_train_cpu.sh config/demo.yaml demo_data/cifar10 --epochs=2 --foreground"

zoo_single_main train CPU "$@"
