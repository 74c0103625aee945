"""Suite-wide settings: BLAS thread cap, Hypothesis profiles, the slow tier.

Profiles are registered in `invariants.profiles` (shared with the pytest plugin's
conformance mode) and nowhere else. One is chosen, in order of precedence,
by ``--hypothesis-profile``, by the ``MARGIN_INVARIANTS_PROFILE`` environment variable,
by a truthy ``CI`` environment variable (``margin-ci``), and otherwise ``dev``.
"""

import os

from invariants.threads import cap_blas_threads

# Must run before numpy or scipy is first imported (see invariants.threads).
cap_blas_threads()

from importlib import metadata

import pytest
from hypothesis import settings

from invariants.profiles import (
    PROFILE_ENV_VAR,
    select_profile,
    thorough_profile_loaded,
)

try:
    import threadpoolctl
except ImportError:  # threadpoolctl is in the `test` extra, not a runtime dependency
    _THREADPOOL_LIMITER = None
else:
    # A plugin may have loaded numpy before this file, too late for the variables above.
    # The limiter object is kept alive so the limit is never restored mid-session.
    _THREADPOOL_LIMITER = threadpoolctl.threadpool_limits(1)


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
    try:
        select_profile(config.getoption("hypothesis_profile", None))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    if config.getoption("--run-slow") or thorough_profile_loaded():
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
