#!/usr/bin/env bash
# Learning loss at CPU scale, as a study (not tuning): does the loss-prediction module rank the test
# losses better than entropy does, and does lloss beat random, as a function of epochs per cycle and
# of the labeled budget? 1/4-width ResNet-18 (experiment=ll4al_cifar10_cpu) on an image-folder copy of
# CIFAR-10, 1,000 random initial labels + 1,000 per cycle, M = 5,000 candidates, 16 epochs per cycle up to
# 4,000 labels and 32 epochs per cycle up to 2,000 labels, with the lr drop (0.8)
# and the detach point (strategy.detach_at 0.6) at the paper's fractions of training, seeds 0, 1, 2; two
# jobs at a time on one thread each (about 90 minutes on a 2-core machine).
#   scripts/ll4al_cpu_study.sh DATA_DIR [OUT_ROOT]     (DATA_DIR/{train,test}/<class>/*.jpg)
# then: python scripts/ll4al_study_report.py OUT_ROOT/ll4al_cpu_study results/ll4al_cpu_study
set -euo pipefail
DATA=${1:?usage: scripts/ll4al_cpu_study.sh DATA_DIR [OUT_ROOT]}
OUT=${2:-runs}
for SETTING in 16:13:4 32:26:2; do  # epochs:lr milestone:cycles
  IFS=: read -r EPOCHS MILESTONE CYCLES <<< "$SETTING"
  OMP_NUM_THREADS=1 al-bench -m hydra/launcher=local_parallel hydra.launcher.n_jobs=2 \
    experiment=ll4al_cifar10_cpu name=ll4al_cpu_study dataset=imagefolder "dataset.root=$DATA" \
    budget.initial=1000 budget.step=1000 "budget.cycles=$CYCLES" "trainer.epochs=$EPOCHS" "trainer.milestones=[$MILESTONE]" trainer.threads=1 \
    trainer.progress=false strategy=random,lloss seed=0,1,2 "out_root=$OUT"
done
