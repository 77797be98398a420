#!/usr/bin/env bash
# Regenerates the accuracy numbers in README.md (JSON under benchmarks/results/).
# Run from the repo root after `make venv`; needs the data sets in $WILDFER_DATA (default ../shared/data).
# ~30-45 minutes on a 2-core CPU.
#   bash benchmarks/readme_numbers.sh            # everything
#   bash benchmarks/readme_numbers.sh fer        # only the FER2013 / FER+ evaluations
set -euo pipefail
cd "$(dirname "$0")/.."
W=.venv/bin/wildfer
D=${WILDFER_DATA:-../shared/data}
R=benchmarks/results
mkdir -p $R
what=${1:-all}
if [[ $what == all || $what == fer ]]; then
  # each model once per TTA mode; its probabilities are kept (runs/probs/, ignored by git) so the
  # ensembles below are combined from them instead of running the networks again
  P=runs/probs
  for m in default fast default_resnet; do
    $W evaluate $D/fer2013/fer2013.csv.gz --model $m --split PublicTest --json $R/eval_${m}_publictest.json \
       --save-probs $P/${m}_none.npz
    $W evaluate $D/fer2013/fer2013.csv.gz --model $m --split PublicTest --tta tencrop --json $R/eval_${m}_publictest_tencrop.json \
       --save-probs $P/${m}_tencrop.npz
  done
  # the ensemble: default + its partner default_resnet (probabilities averaged), plain and ten-crop
  $W evaluate $D/fer2013/fer2013.csv.gz --model $P/default_none.npz --model $P/default_resnet_none.npz \
     --split PublicTest --json $R/eval_ensemble_publictest.json
  $W evaluate $D/fer2013/fer2013.csv.gz --model $P/default_tencrop.npz --model $P/default_resnet_tencrop.npz \
     --split PublicTest --tta tencrop --json $R/eval_ensemble_publictest_tencrop.json
  # every subset of the three 7-class built-ins, equal and grid-searched weights, from the kept probabilities
  .venv/bin/python benchmarks/ensemble_search.py $P/default_none.npz $P/default_resnet_none.npz $P/fast_none.npz \
     --data $D/fer2013/fer2013.csv.gz --out $R/ensemble_search.json
  .venv/bin/python benchmarks/ensemble_search.py $P/default_tencrop.npz $P/default_resnet_tencrop.npz $P/fast_tencrop.npz \
     --data $D/fer2013/fer2013.csv.gz --out $R/ensemble_search_tencrop.json
  # the built-in "accurate" (that ensemble with ten-crop inside one model), run for real (~15 min)
  $W evaluate $D/fer2013/fer2013.csv.gz --model accurate --split PublicTest --json $R/eval_accurate_publictest.json
  # ferplus: FER+ majority labels (8 classes), and mapped to FER2013's 7 classes on FER2013's labels
  if [[ -f src/wildfer/weights/ferplus.safetensors ]]; then
    $W evaluate $D/fer2013/fer2013.csv.gz --model ferplus --split PublicTest --dataset ferplus --json $R/eval_ferplus_publictest.json
    $W evaluate $D/fer2013/fer2013.csv.gz --model ferplus --split PublicTest --dataset ferplus --tta tencrop \
       --json $R/eval_ferplus_publictest_tencrop.json
    $W evaluate $D/fer2013/fer2013.csv.gz --model ferplus --split PublicTest --json $R/eval_ferplus_publictest_fer2013labels.json
  fi
fi
if [[ $what == all || $what == wild ]]; then
  # the wild dev sets: ExpW val (web faces), LFW, KDEF; whole photo vs detect with default vs the pipeline's wild
  for mode in whole detect; do
    $W evaluate-wild $D/wild/expw.csv --split val --model default --mode $mode --json $R/wild_expw_val_${mode}.json
  done
  $W evaluate-wild $D/wild/expw.csv --split val --model wild --json $R/wild_expw_val_detect_wild.json \
     --save-predictions runs/wild_expw_val_detect_wild.csv  # per face; holds the labels, kept out of git
  $W evaluate-wild $D/wild/expw.csv --split val --model ferplus --classes fer2013 --json $R/wild_expw_val_detect_ferplus.json
  $W evaluate $D/fer2013/fer2013.csv.gz --model wild --split PublicTest --json $R/eval_wild_publictest.json
  # flip TTA inside the pipeline (predict --tta): twice the classifier's cost
  for m in wild wild_ensemble; do
    $W evaluate-wild $D/wild/expw.csv --split val --model $m --tta --json $R/wild_expw_val_detect_${m}_tta.json
    for set in lfw kdef_frontal; do
      $W evaluate-wild $D/wild/$set.csv --model $m --tta --json $R/wild_${set}_detect_${m}_tta.json
    done
  done
  # the pipeline's model, wild_ensemble (wild + the RAF-DB MobileFaceNet wild_mfn, each on its own
  # crop), float and int8 (each member on its own int8 graph); wild_mfn alone is scored in its
  # trial folder, benchmarks/results/train_wild_trials/mfn_fer2013_then_wild_r40/
  for m in wild_ensemble; do
    for backend in torch int8 auto; do  # auto: its default, wild int8 beside wild_mfn float
      sfx=""; [[ $backend != torch ]] && sfx="_$backend"
      $W evaluate-wild $D/wild/expw.csv --split val --model $m --backend $backend --json $R/wild_expw_val_detect_${m}${sfx}.json
      for set in lfw kdef_frontal; do
        $W evaluate-wild $D/wild/$set.csv --model $m --backend $backend --json $R/wild_${set}_detect_${m}${sfx}.json
      done
      $W evaluate $D/fer2013/fer2013.csv.gz --model $m --backend $backend --split PublicTest \
         --json $R/eval_${m}${sfx}_publictest.json
    done
  done
  # its calibration: temperature and class bias on ExpW val, ECE and risk-coverage on every dev set
  .venv/bin/python benchmarks/calibration.py --model wild_ensemble --class-bias
  for set in lfw kdef_frontal; do
    $W evaluate-wild $D/wild/$set.csv --model wild --json $R/wild_${set}_detect_wild.json
    for mode in whole detect; do
      $W evaluate-wild $D/wild/$set.csv --model default --mode $mode --json $R/wild_${set}_${mode}.json
    done
    # which built-in model should the wild pipeline use? the same photos through each
    for m in fast ferplus; do
      [[ -f src/wildfer/weights/$m.safetensors ]] || continue
      cls=""; [[ $m == ferplus ]] && cls="--classes fer2013"
      $W evaluate-wild $D/wild/$set.csv --model $m $cls --mode detect --json $R/wild_${set}_detect_${m}.json
    done
  done
  # the other built-ins through the same pipeline (accurate: 20 network passes per face, ~15 min)
  $W evaluate-wild $D/wild/expw.csv --split val --model fast --json $R/wild_expw_val_detect_fast.json
  for m in default_resnet accurate; do
    $W evaluate-wild $D/wild/expw.csv --split val --model $m --json $R/wild_expw_val_detect_${m}.json
    for set in lfw kdef_frontal; do
      $W evaluate-wild $D/wild/$set.csv --model $m --json $R/wild_${set}_detect_${m}.json
    done
  done
fi
if [[ $what == all || $what == speed ]]; then
  # on an otherwise idle machine: each JSON records the load average it saw
  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/inference.py --models default,fast
  .venv/bin/python benchmarks/inference.py --models accurate --quick --batch-sizes 1,16 --out $R/inference_accurate.json
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/wild_latency.py
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve_load.py
fi
