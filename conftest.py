"""Suite-wide settings: BLAS thread cap, Hypothesis profiles, the slow tier.

Profiles are registered here and nowhere else. One is chosen, in order of precedence,
by ``--hypothesis-profile``, by the ``MARGIN_INVARIANTS_PROFILE`` environment variable,
by a truthy ``CI`` environment variable (``margin-ci``), and otherwise ``dev``.
"""

import os

# Must run before numpy or scipy is first imported: OpenBLAS, MKL and friends read these
# once, when the library loads. The problems here are tiny, and under xdist extra BLAS
# threads per worker only fight each other for cores.
for _var in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
):
    os.environ.setdefault(_var, "1")

from importlib import metadata

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import InvalidArgument

try:
    import threadpoolctl
except ImportError:  # threadpoolctl is in the `test` extra, not a runtime dependency
    _THREADPOOL_LIMITER = None
else:
    # A plugin may have loaded numpy before this file, too late for the variables above.
    # The limiter object is kept alive so the limit is never restored mid-session.
    _THREADPOOL_LIMITER = threadpoolctl.threadpool_limits(1)

PROFILE_ENV_VAR = "MARGIN_INVARIANTS_PROFILE"
CI_PROFILE = "margin-ci"
DEFAULT_PROFILE = "dev"
THOROUGH_PROFILE = "thorough"
PROFILES = (DEFAULT_PROFILE, CI_PROFILE, THOROUGH_PROFILE)

# Each profile derives from Hypothesis' `default` profile, not from whichever profile is
# loaded: Hypothesis loads its own `ci` profile at import when it detects CI, and a
# profile registered without a parent would silently inherit from it.
_BASE = settings.get_profile("default")

settings.register_profile(
    DEFAULT_PROFILE,
    parent=_BASE,
    max_examples=20,
    deadline=None,
)
settings.register_profile(
    CI_PROFILE,
    parent=_BASE,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    max_examples=50,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    phases=(
        Phase.explicit,
        Phase.reuse,
        Phase.generate,
        Phase.target,
        Phase.shrink,
        Phase.explain,
    ),
    report_multiple_bugs=False,
)
settings.register_profile(
    THOROUGH_PROFILE,
    parent=_BASE,
    max_examples=500,
    deadline=None,
    print_blob=True,
)


def _ci_is_set() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def _check_profile(name: str, source: str) -> str:
    try:
        settings.get_profile(name)
    except InvalidArgument:
        raise pytest.UsageError(
            f"{source}={name!r} is not a registered Hypothesis profile; "
            f"use one of: {', '.join(PROFILES)}"
        ) from None
    return name


def _profile_from_environment() -> str:
    """The profile named by the environment, validated; `dev` when nothing is set."""
    requested = os.environ.get(PROFILE_ENV_VAR, "").strip()
    if not requested:
        return CI_PROFILE if _ci_is_set() else DEFAULT_PROFILE
    return _check_profile(requested, PROFILE_ENV_VAR)


def _thorough_profile_loaded() -> bool:
    # Hypothesis' own plugin derives profiles such as "thorough-with-verbose-verbosity"
    # from the loaded one when given --hypothesis-verbosity or --hypothesis-explain.
    name = settings.get_current_profile_name()
    return name == THOROUGH_PROFILE or name.startswith(f"{THOROUGH_PROFILE}-with-")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow",
        action="store_true",
        default=False,
        help="run tests marked `slow` (always run under the `thorough` profile)",
    )


# tryfirst: runs before Hypothesis' own plugin, which loads --hypothesis-profile (an
# unknown name there is an internal error, so it is checked here first) and derives
# verbosity and explain variants from whichever profile is loaded.
@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    requested = config.getoption("hypothesis_profile", None)
    if requested is None:
        settings.load_profile(_profile_from_environment())
    else:
        _check_profile(requested, "--hypothesis-profile")


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    if config.getoption("--run-slow") or _thorough_profile_loaded():
        return
    skip_slow = pytest.mark.skip(
        reason=(
            "slow: pass --run-slow, or select the thorough profile "
            f"({PROFILE_ENV_VAR}=thorough or --hypothesis-profile=thorough)"
        )
    )
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _blas_thread_cap() -> str:
    cap = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    if _THREADPOOL_LIMITER is None:
        return f"{cap} (environment only; threadpoolctl not installed)"
    return f"{cap} (environment), 1 (threadpoolctl)"


def pytest_report_header(config: pytest.Config) -> list[str]:
    current = settings.default
    derandomize = "on" if current.derandomize else "off"
    profile_line = (
        f"margin-invariants: hypothesis profile "
        f"{settings.get_current_profile_name()!r}, derandomize {derandomize}, "
        f"max_examples={current.max_examples}"
    )
    versions_line = (
        f"numpy {_version('numpy')}, scipy {_version('scipy')}, "
        f"hypothesis {_version('hypothesis')}; BLAS threads {_blas_thread_cap()}"
    )
    return [profile_line, versions_line]
