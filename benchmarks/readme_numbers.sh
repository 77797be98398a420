#!/usr/bin/env bash
# Regenerates the accuracy numbers in README.md (JSON under benchmarks/results/).
# Run from the repo root after `make venv`; needs ../shared/data.  ~15-25 minutes on the 2-core dev machine.
#   bash benchmarks/readme_numbers.sh            # everything
#   bash benchmarks/readme_numbers.sh fer        # only the FER2013 / FER+ evaluations
set -euo pipefail
cd "$(dirname "$0")/.."
W=.venv/bin/wildfer
D=../shared/data
R=benchmarks/results
mkdir -p $R
what=${1:-all}
if [[ $what == all || $what == fer ]]; then
  for m in default fast; do
    $W evaluate $D/fer2013/fer2013.csv.gz --model $m --split PublicTest --json $R/eval_${m}_publictest.json
    $W evaluate $D/fer2013/fer2013.csv.gz --model $m --split PublicTest --tta tencrop --json $R/eval_${m}_publictest_tencrop.json
  done
  $W evaluate $D/fer2013/fer2013.csv.gz --model default --model fast --split PublicTest --tta tencrop \
     --json $R/eval_ensemble_publictest_tencrop.json
fi
if [[ $what == all || $what == wild ]]; then
  for set in lfw kdef_frontal; do
    for mode in whole detect; do
      $W evaluate-wild $D/wild/$set.csv --model default --mode $mode --json $R/wild_${set}_${mode}.json
    done
  done
fi
if [[ $what == all || $what == speed ]]; then
  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/inference.py --models default,fast
fi
