"""The fault catalogue still applies to the code it is meant to break.

`python faults/run.py` refuses a fault whose edit does not match exactly once; this
catches that in the default suite, the moment a refactor moves the code a fault
edits, instead of at the next (long) fault run.
"""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "faults"))

from catalogue import FAULTS


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_each_fault_edits_exactly_one_place(fault):
    text = (ROOT / fault.path).read_text()
    assert text.count(fault.old) == 1, (fault.name, fault.path)
    assert fault.old != fault.new


def test_fault_names_are_unique():
    names = [f.name for f in FAULTS]
    assert len(names) == len(set(names))
