"""The suite's Hypothesis profiles, registered in one place for every runner.

This repository's conftest.py and the pytest plugin's conformance mode (which runs
in other projects, where conftest.py is not installed) both register them from here
and choose one the same way, in order of precedence: ``--hypothesis-profile``, the
``MARGIN_INVARIANTS_PROFILE`` environment variable, a truthy ``CI`` environment
variable (``margin-ci``), and otherwise ``dev``.

Importing this module imports Hypothesis and registers the profiles; the plugin does
so only when a session asks for the conformance mode.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import InvalidArgument

__all__ = [
    "CI_PROFILE",
    "DEFAULT_PROFILE",
    "PROFILES",
    "PROFILE_ENV_VAR",
    "THOROUGH_PROFILE",
    "check_profile",
    "profile_from_environment",
    "select_profile",
    "thorough_profile_loaded",
]

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


def check_profile(name: str, source: str) -> str:
    """`name` if it is a registered profile; ValueError naming `source` otherwise."""
    try:
        settings.get_profile(name)
    except InvalidArgument:
        raise ValueError(
            f"{source}={name!r} is not a registered Hypothesis profile; "
            f"use one of: {', '.join(PROFILES)}"
        ) from None
    return name


def profile_from_environment() -> str:
    """The profile named by the environment, validated; `dev` when nothing is set."""
    requested = os.environ.get(PROFILE_ENV_VAR, "").strip()
    if not requested:
        return CI_PROFILE if _ci_is_set() else DEFAULT_PROFILE
    return check_profile(requested, PROFILE_ENV_VAR)


def select_profile(requested: str | None) -> None:
    """Load the environment's profile, or check the ``--hypothesis-profile`` value
    (Hypothesis' own plugin loads it, and treats an unknown name as an internal
    error). Raises ValueError for an unknown name."""
    if requested is None:
        settings.load_profile(profile_from_environment())
    else:
        check_profile(requested, "--hypothesis-profile")


def thorough_profile_loaded() -> bool:
    # Hypothesis' own plugin derives profiles such as "thorough-with-verbose-verbosity"
    # from the loaded one when given --hypothesis-verbosity or --hypothesis-explain.
    name = settings.get_current_profile_name()
    return name == THOROUGH_PROFILE or name.startswith(f"{THOROUGH_PROFILE}-with-")
