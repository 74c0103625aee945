"""Hypothesis settings for this project's own suite.

Gradient flow is simulated exactly, so examples are expensive: a few per property,
derandomised so every run checks the same cases, no example database written here,
and no deadline (one simulated limit takes a fraction of a second to seconds).
"""

from hypothesis import settings

settings.register_profile(
    "downstream",
    # Hypothesis loads its own `ci` profile when CI is set; derive from `default` so
    # this profile does not silently inherit from it.
    parent=settings.get_profile("default"),
    max_examples=5,
    derandomize=True,
    database=None,
    deadline=None,
)
settings.load_profile("downstream")
