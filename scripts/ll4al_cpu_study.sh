#!/usr/bin/env bash
# Learning loss at CPU scale, as a study (not tuning): does the loss-prediction module rank the test
# losses better than entropy does, and does lloss beat random, as a function of epochs per cycle and
# of the labeled budget? 1/4-width ResNet-18 (experiment=ll4al_cifar10_cpu) on an image-folder copy of
# CIFAR-10, 1,000 + 1,000 x 3 labels (1,000..4,000), M = 5,000 candidates, 16 and 32 epochs per cycle with
# the lr drop (0.8) and the detach point (strategy.detach_at 0.6) at the paper's fractions of training,
# seeds 0, 1, 2; two jobs at a time on one thread each (about 80 minutes on a 2-core machine).
#   scripts/ll4al_cpu_study.sh DATA_DIR [OUT_ROOT]     (DATA_DIR/{train,test}/<class>/*.jpg)
# then: python scripts/ll4al_study_report.py OUT_ROOT/ll4al_cpu_study results/ll4al_cpu_study
set -euo pipefail
DATA=${1:?usage: scripts/ll4al_cpu_study.sh DATA_DIR [OUT_ROOT]}
OUT=${2:-runs}
for EPOCHS_MILESTONE in 16:13 32:26; do
  EPOCHS=${EPOCHS_MILESTONE%%:*}
  MILESTONE=${EPOCHS_MILESTONE##*:}
  OMP_NUM_THREADS=1 al-bench -m hydra/launcher=local_parallel hydra.launcher.n_jobs=2 \
    experiment=ll4al_cifar10_cpu name=ll4al_cpu_study dataset=imagefolder "dataset.root=$DATA" \
    budget.initial=1000 budget.step=1000 budget.cycles=4 "trainer.epochs=$EPOCHS" "trainer.milestones=[$MILESTONE]" trainer.threads=1 \
    trainer.progress=false strategy=random,lloss seed=0,1,2 "out_root=$OUT"
done
