"""runner.sequence.topics.is_number answers as ``isinstance(value, numbers.Number)`` does, without a
runner importing numbers (tests/runner/test_start_imports.py pins that it has not before PANG)."""

from __future__ import annotations

import numbers
import subprocess
import sys
import textwrap
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from testhost import REPO

from runner.sequence.topics import is_number


class _Subclassed(numbers.Number):
    pass


class _Registered:
    pass


numbers.Number.register(_Registered)

VALUES: list[Any] = [0, -7, 2**80, True, False, 2.5, float("nan"), 1j, Decimal("1.5"), Fraction(1, 3),
                     _Subclassed(), _Registered(), "1", b"1", bytearray(b"1"), None, [1], (1,), {"a": 1}, object(), int, float]


@pytest.mark.parametrize("value", VALUES, ids=[f"{i}-{type(v).__name__}" for i, v in enumerate(VALUES)])
def test_as_isinstance_of_numbers_number(value: Any) -> None:
    assert is_number(value) is isinstance(value, numbers.Number)


@given(st.one_of(st.integers(), st.floats(), st.complex_numbers(), st.decimals(), st.fractions(), st.booleans(),
                 st.text(), st.binary(), st.none(), st.lists(st.integers()), st.dictionaries(st.text(), st.integers())))
def test_as_isinstance_for_generated_values(value: Any) -> None:
    assert is_number(value) is isinstance(value, numbers.Number)


def test_without_numbers_imported_int_float_and_complex_are_numbers_and_numbers_stays_unimported() -> None:
    script = textwrap.dedent("""
        import sys
        from runner.sequence.topics import is_number
        answers = [is_number(v) for v in (1, True, 2.5, 1j, "1", b"1", None, [1])]
        print(answers, "numbers" in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", script], check=True, cwd=str(REPO), capture_output=True, text=True,
                          timeout=60)
    assert proc.stdout.strip() == "[True, True, True, True, False, False, False, False] False"
