"""Every code block of docs/strategies.md runs, so the guide cannot rot.

```python blocks run as modules, then every `test_*` function they define is called
(a @given test runs its examples); ```pycon blocks run as doctests. A profile with
few examples keeps this fast; blocks that set max_examples themselves keep theirs.
"""

import doctest
import re
import warnings
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.errors import NonInteractiveExampleWarning

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "strategies.md"
BLOCK = re.compile(r"^```(python|pycon)\n(.*?)^```$", re.DOTALL | re.MULTILINE)

# Derandomised, like the CI profile: the guide's examples must not pass or fail by
# the draw.
settings.register_profile(
    "docs",
    parent=settings.get_profile("default"),
    max_examples=3,
    deadline=None,
    derandomize=True,
    database=None,
)


def _blocks() -> list[tuple[str, str, int]]:
    text = GUIDE.read_text()
    return [
        (m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1)
        for m in BLOCK.finditer(text)
    ]


@pytest.fixture
def few_examples():
    previous = settings.get_current_profile_name()
    settings.load_profile("docs")
    try:
        yield
    finally:
        settings.load_profile(previous)


def test_the_guide_has_code_to_run():
    kinds = [kind for kind, _, _ in _blocks()]
    assert kinds.count("python") >= 5 and "pycon" in kinds


@pytest.mark.usefixtures("few_examples")
@pytest.mark.parametrize(
    ("kind", "code", "line"),
    _blocks(),
    ids=lambda v: f"L{v}" if isinstance(v, int) else "",
)
def test_a_code_block_runs(kind, code, line):
    name = f"{GUIDE.name}:{line}"
    if kind == "pycon":
        # .example() is meant for the REPL; the guide says so, and it warns elsewhere.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonInteractiveExampleWarning)
            test = doctest.DocTestParser().get_doctest(code, {}, name, name, line)
            runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
            runner.run(test)
        assert runner.failures == 0, f"doctest at {name} failed (output above)"
        return
    namespace = {"__name__": f"docs_block_{line}"}
    exec(compile(code, name, "exec"), namespace)  # noqa: S102 - the guide's own code
    for test_name, function in namespace.items():
        if test_name.startswith("test_") and callable(function):
            function()
