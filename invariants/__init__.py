"""margin-invariants: executable checks of the implicit bias of gradient flow.

Vardi, Shamir & Srebro ("On Margin Maximization in Linear and ReLU Networks",
NeurIPS 2022) show when gradient flow on a homogeneous, bias-free linear or ReLU
network converges in direction to a global or local optimum of the max-margin
problem, and construct counterexamples where it does not. This package makes those
results executable:

- `invariants.networks`: the class N of networks given by integer index maps
  (`Network`, `fully_connected`, `diagonal`, `convolutional`, `no_share`,
  `from_index_maps`), with margins and their Jacobian;
- `invariants.casefile`: a training case (network, X, y, theta0, loss) as data
  (`Case`), and its JSON form;
- `invariants.flow`: the simulator (`gradient_flow`, `simulate`) that follows
  gradient flow along its exact path far out and returns a `Trajectory`;
- `invariants.kkt`, `invariants.certify`: KKT conditions of the limit and convex
  certificates of its optimality (`kkt_point`, `optimality`);
- `invariants.witness`, `invariants.exact_check`: searched witnesses of
  non-optimality, verified in exact arithmetic (`find_local_improvement`, `Witness`);
- `invariants.regimes`: which theorem governs a limit (`classify`);
- `invariants.cases`: the paper's constructions with their closed-form limits and
  witnesses;
- `python -m invariants examine CASE.json`: a JSON report on one case.

The names below are loaded on first use, so importing one submodule (for example
`invariants.networks`) does not import the simulator.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS = {
    "Network": "networks",
    "fully_connected": "networks",
    "diagonal": "networks",
    "convolutional": "networks",
    "no_share": "networks",
    "from_index_maps": "networks",
    "Case": "casefile",
    "CaseError": "casefile",
    "gradient_flow": "flow",
    "simulate": "flow",
    "Trajectory": "flow",
    "FlowError": "flow",
    "StationaryPointError": "flow",
    "Construction": "cases",
    "CONSTRUCTIONS": "cases",
    "kkt_point": "kkt",
    "assert_kkt": "kkt",
    "optimality": "certify",
    "classify": "regimes",
    "Witness": "exact_check",
    "verify_witness": "exact_check",
    "find_local_improvement": "witness",
    "find_global_improvement": "witness",
}

__all__ = [
    "CONSTRUCTIONS",
    "Case",
    "CaseError",
    "Construction",
    "FlowError",
    "Network",
    "StationaryPointError",
    "Trajectory",
    "Witness",
    "__version__",
    "assert_kkt",
    "classify",
    "convolutional",
    "diagonal",
    "find_global_improvement",
    "find_local_improvement",
    "from_index_maps",
    "fully_connected",
    "gradient_flow",
    "kkt_point",
    "no_share",
    "optimality",
    "simulate",
    "verify_witness",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from invariants.casefile import Case, CaseError
    from invariants.cases import CONSTRUCTIONS, Construction
    from invariants.certify import optimality
    from invariants.exact_check import Witness, verify_witness
    from invariants.flow import (
        FlowError,
        StationaryPointError,
        Trajectory,
        gradient_flow,
        simulate,
    )
    from invariants.kkt import assert_kkt, kkt_point
    from invariants.networks import (
        Network,
        convolutional,
        diagonal,
        from_index_maps,
        fully_connected,
        no_share,
    )
    from invariants.regimes import classify
    from invariants.witness import find_global_improvement, find_local_improvement


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'invariants' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"invariants.{module}"), name)
    # Cache it so later lookups bypass this hook.
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
