"""The public names of `invariants` and `strategies`: pinned, importable, typed, lazy.

Downstream projects (see examples/downstream) import these names. Removing or
renaming one breaks them, so the lists are pinned here: a change must be made on
purpose, in this file and in docs/strategies.md, not by accident.
"""

import importlib
import inspect
import json
import pkgutil
import subprocess
import sys

import pytest

import invariants
import strategies

PUBLIC_NAMES = {
    "invariants": [
        "CONSTRUCTIONS", "Case", "CaseError", "Construction", "FlowError", "Network",
        "StationaryPointError", "Trajectory", "Witness", "__version__", "assert_kkt",
        "classify", "convolutional", "diagonal", "find_global_improvement",
        "find_local_improvement", "from_index_maps", "fully_connected",
        "gradient_flow", "kkt_point", "no_share", "optimality", "simulate",
        "verify_witness",
    ],
    "strategies": [
        "INIT_KINDS", "Dataset", "ExactArray", "architectures",
        "convolutional_networks", "diagonal_networks", "fully_connected_networks",
        "initializations", "no_share_networks", "separable_datasets",
        "shared_weight_networks", "training_cases",
    ],
}  # fmt: skip

# Modules written while this test was added; each gets checked once it has landed.
NOT_YET_CHECKED = ("invariants.batch",)
# Test modules shipped for `pytest --pyargs invariants.conformance`: they skip
# themselves at import without a trainer and export nothing.
TEST_MODULES = "invariants.conformance.test_"
# A script entry point, not a module to import from.
NO_ALL = {"invariants.__main__"}
PACKAGES = {"invariants": invariants, "strategies": strategies}


def _public_modules():
    for package in PACKAGES.values():
        yield package.__name__
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            name = info.name
            if name in NO_ALL or name.startswith((*NOT_YET_CHECKED, TEST_MODULES)):
                continue
            if not any(part.startswith("_") for part in name.split(".")):
                yield name


@pytest.mark.parametrize("package", sorted(PUBLIC_NAMES))
def test_the_public_names_are_pinned(package):
    names = set(PACKAGES[package].__all__)
    pinned = set(PUBLIC_NAMES[package])
    assert names == pinned, (
        f"{package}.__all__ changed: removed {sorted(pinned - names)}, added "
        f"{sorted(names - pinned)}. Downstream code imports these names: keep them, "
        "or update PUBLIC_NAMES here and docs/strategies.md on purpose"
    )


@pytest.mark.parametrize("package", sorted(PUBLIC_NAMES))
def test_every_public_name_resolves(package):
    module = PACKAGES[package]
    for name in module.__all__:
        assert hasattr(module, name), f"{package}.{name} does not resolve"


def test_every_lazy_export_resolves_to_its_submodule():
    exports = invariants._EXPORTS
    assert set(exports) == set(invariants.__all__) - {"__version__"}
    for name, submodule in exports.items():
        defining = importlib.import_module(f"invariants.{submodule}")
        assert getattr(invariants, name) is getattr(defining, name), name


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        invariants.no_such_name  # noqa: B018


@pytest.mark.parametrize("module_name", sorted(_public_modules()))
def test_every_public_module_has_an_all_whose_names_exist(module_name):
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    assert names is not None, f"{module_name} has no __all__"
    missing = [n for n in names if not hasattr(module, n)]
    assert not missing, f"{module_name}.__all__ lists undefined names {missing}"
    assert len(set(names)) == len(names), f"{module_name}.__all__ has duplicates"


def _functions(package):
    for name in package.__all__:
        obj = getattr(package, name)
        if inspect.isfunction(obj):
            yield f"{package.__name__}.{name}", obj


@pytest.mark.parametrize(
    ("name", "function"),
    [pair for package in PACKAGES.values() for pair in _functions(package)],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_every_public_function_is_fully_annotated(name, function):
    signature = inspect.signature(function)
    bare = [
        p.name
        for p in signature.parameters.values()
        if p.annotation is inspect.Parameter.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    assert not bare, f"{name}: parameters without a type hint: {bare}"
    assert signature.return_annotation is not inspect.Signature.empty, (
        f"{name} has no return annotation"
    )


def _loaded_after(statement: str) -> dict:
    """Which heavy modules a fresh interpreter has loaded after `statement`."""
    probe = (
        f"{statement}\nimport json, sys\n"
        "print(json.dumps({m: m in sys.modules for m in "
        "('numpy', 'scipy', 'cvxpy', 'hypothesis', 'invariants.flow', "
        "'invariants.certify')}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)


def test_importing_invariants_loads_nothing_heavy():
    # The exports are lazy: `import invariants` costs nothing until a name is used.
    loaded = _loaded_after("import invariants")
    assert not any(loaded.values()), loaded


def test_importing_strategies_loads_neither_the_simulator_nor_cvxpy():
    # strategies needs networks, losses (scipy.special) and hypothesis; the simulator
    # and the conic certificates (cvxpy, slow to import) stay unloaded.
    loaded = _loaded_after("import strategies")
    assert loaded["hypothesis"] and loaded["numpy"]
    assert not loaded["cvxpy"], loaded
    assert not loaded["invariants.flow"], loaded
    assert not loaded["invariants.certify"], loaded


def test_the_certificates_load_cvxpy_only_when_used():
    loaded = _loaded_after("import invariants\ninvariants.optimality")
    assert loaded["invariants.certify"] and not loaded["cvxpy"], loaded
