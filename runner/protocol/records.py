"""Small value classes written by hand instead of with ``@dataclass``.

Every runner imports the protocol's event classes before its first PANG. A
``@dataclass(slots=True)`` builds its ``__init__``/``__repr__``/``__eq__`` (and, frozen,
``__hash__``/``__setattr__``/``__delattr__``) with one ``exec`` each and then makes the
class a second time for its slots: for the five data-plane events and the schema's
WireField that was ~1.8 ms of a ~50 ms start. These bases give the same behaviour
without generating code: equal when of the same class with equal fields (in the order
of ``__match_args__``), the dataclass repr, and, frozen, hashed by the fields and
refusing assignment with dataclasses' own FrozenInstanceError. Each class writes its
``__slots__``, ``__match_args__`` and ``__init__`` itself (the ``__init__`` of a class
made once per frame stays as fast as the generated one).

Type checkers see the classes as the dataclasses they replace (``checked_as``), so a
field assignment to a frozen one is still an error there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

__all__ = ["FrozenRecord", "Record", "checked_as", "frozen_error"]

if TYPE_CHECKING:
    from dataclasses import dataclass as checked_as
else:

    def checked_as(**_: Any) -> Any:
        """At run time nothing: the class stays as written."""
        return lambda cls: cls


def frozen_error(message: str) -> AttributeError:
    """dataclasses' FrozenInstanceError (an AttributeError), imported when one is raised: a runner
    does not import dataclasses for its messages and records."""
    from dataclasses import FrozenInstanceError

    return FrozenInstanceError(message)


class Record:
    """Compared by value and shown like a dataclass; fields are ``__match_args__``."""

    __slots__ = ()
    __match_args__: ClassVar[tuple[str, ...]] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__match_args__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    # No __hash__: defining __eq__ sets it to None (unhashable), as for a dataclass with eq.

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__match_args__)
        return f"{type(self).__qualname__}({fields})"


class FrozenRecord(Record):
    """A Record whose fields are set once, in ``__init__`` (``object.__setattr__``), and hashed."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise frozen_error(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise frozen_error(f"cannot delete field {name!r}")

    def __hash__(self) -> int:
        return hash(self._values())

    # copy and pickle, as for a frozen slotted dataclass: the fields in order, set past __setattr__
    def __getstate__(self) -> list[Any]:
        return list(self._values())

    def __setstate__(self, state: list[Any]) -> None:
        for name, value in zip(self.__match_args__, state):
            object.__setattr__(self, name, value)
