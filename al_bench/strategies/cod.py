"""Cyclic output discrepancy, the sampling of the authors' code for temporal output discrepancy
(Huang et al., ICCV 2021, arXiv:2107.14153; siyuhuang/TOD main_TOD.py): the discrepancy of the
model's outputs to those of the previous cycle's final model, the lowest in the first cycle (where
the reference is a freshly initialised network). Everything else is al_bench.strategies.tod."""

from al_bench.strategies.tod import TemporalOutputDiscrepancy


class CyclicOutputDiscrepancy(TemporalOutputDiscrepancy):
    """Temporal output discrepancy against the previous cycle's model."""

    default_reference = "previous_cycle"
    default_first_cycle = "lowest"
