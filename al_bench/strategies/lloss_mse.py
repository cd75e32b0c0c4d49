"""The paper's ablation "learn loss mse": the module regresses the loss with MSE instead of the
pairwise ranking loss (Yoo & Kweon 2019, arXiv:1905.03677, figure 4). By default errors beyond
`mse_clip` (1.0) count linearly so the gradient stays bounded (see lloss.mse_loss: plain MSE
diverges on small models at lr 0.05-0.1); `strategy.mse_clip=null` is plain MSE."""

from al_bench.strategies.lloss import LearningLoss


class LearningLossMSE(LearningLoss):
    """Learning loss with the loss-prediction module trained by mean squared error."""

    loss_kind = "mse"
