"""The paper's ablation "learn loss mse": the module regresses the loss with MSE instead of the
pairwise ranking loss (Yoo & Kweon 2019, arXiv:1905.03677, figure 4)."""

from al_bench.strategies.lloss import LearningLoss


class LearningLossMSE(LearningLoss):
    """Learning loss with the loss-prediction module trained by mean squared error."""

    loss_kind = "mse"
