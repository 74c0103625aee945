"""Public Hypothesis strategies for margin-invariants.

Networks of the class N (`architectures` and one strategy per family), datasets that a
given network separates by construction (`separable_datasets`), initial parameters
(`initializations`), and whole training cases (`training_cases`). Every strategy takes
keyword-only options, checks them on first draw (raising
`hypothesis.errors.InvalidArgument`), builds valid objects without filtering, says in
its docstring what it shrinks towards, and returns values whose repr is exact.
"""

from strategies._printing import Dataset, ExactArray
from strategies.architectures import (
    architectures,
    convolutional_networks,
    diagonal_networks,
    fully_connected_networks,
    no_share_networks,
    shared_weight_networks,
)
from strategies.datasets import separable_datasets, training_cases
from strategies.initializations import INIT_KINDS, initializations

__all__ = [
    "INIT_KINDS",
    "Dataset",
    "ExactArray",
    "architectures",
    "convolutional_networks",
    "diagonal_networks",
    "fully_connected_networks",
    "initializations",
    "no_share_networks",
    "separable_datasets",
    "shared_weight_networks",
    "training_cases",
]
