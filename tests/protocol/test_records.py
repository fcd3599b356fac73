"""The hand-written value classes (runner/protocol/records.py) and the message classes (read by
schema.collect_fields, not @dataclass) behave as the dataclasses they were, and importing what a
runner imports before its first PANG generates no methods and no dataclasses (what made its start
slower)."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import subprocess
import sys
import textwrap
import types
from typing import Any

import pytest

from runner.protocol.events import (
    MESSAGES,
    ConnectionClosed,
    CreditAvailable,
    Data,
    Deadline,
    DeadlineExpired,
    EndOfStream,
    Message,
    Ping,
    replaced,
)
from runner.protocol.records import FrozenRecord
from runner.protocol.schema import WireField
from runner.sequence.failure import Failure
from runner.sequence.loader import LoadedSequence
from runner.sequence.shapes import SequenceRun
from runner.sequence.topics import Topics


def reference(cls: type, frozen: bool) -> type:
    """The dataclass ``cls`` was before: same name, fields and flags (no slots: a frozen slotted
    dataclass of 3.11 answers an assignment with a TypeError, not FrozenInstanceError)."""
    fields = [(name, Any) for name in cls.__match_args__]
    made: type = dataclasses.make_dataclass(cls.__name__, fields, frozen=frozen)
    return made


CASES: list[tuple[type, tuple[Any, ...]]] = [
    (Data, (1, b"payload")),
    (Data, (2, memoryview(b"view"))),
    (EndOfStream, (3,)),
    (CreditAvailable, (1, 65536)),
    (ConnectionClosed, ()),
    (DeadlineExpired, (Deadline.EXIT,)),
    (WireField, ("timeout_ms", "timeout", (int, float), True, False, True, False)),
    (Topics, ("in", "text/plain", "out", None)),
    (Failure, (23, "ValueError: boom", "Traceback ...\n")),
    (LoadedSequence, ("/s", "/s/main.py", "s", "1.0", {"main": "main.py"}, types.ModuleType("m"), print, [1],
                      {"contentType": "text/plain"}, None, None, None)),
]


@pytest.mark.parametrize(("cls", "values"), CASES)
def test_a_record_behaves_as_its_dataclass(cls: type, values: tuple[Any, ...]) -> None:
    frozen = issubclass(cls, FrozenRecord)
    ref = reference(cls, frozen)
    ours, theirs = cls(*values), ref(*values)
    assert repr(ours) == repr(theirs)
    assert ours == cls(*values) and ours != theirs and ours != values  # same class only, by value
    assert cls.__match_args__ == ref.__match_args__
    assert cls(**dict(zip(cls.__match_args__, values))) == ours  # keywords as well
    if frozen:
        assert hash(ours) == hash(theirs)
        with pytest.raises(dataclasses.FrozenInstanceError):
            ours.renamed = 1
        for name in cls.__match_args__:
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(ours, name, None)
            with pytest.raises(dataclasses.FrozenInstanceError):
                delattr(ours, name)
    else:
        with pytest.raises(TypeError, match="unhashable"):
            hash(ours)
        with pytest.raises(TypeError, match="unhashable"):
            hash(theirs)
        setattr(ours, cls.__match_args__[0], 7)
        assert getattr(ours, cls.__match_args__[0]) == 7
    if "__slots__" in cls.__dict__:
        assert not hasattr(cls(*values), "__dict__")
        with pytest.raises(AttributeError):
            cls(*values).renamed = 1
    if not any(isinstance(v, (memoryview, types.ModuleType)) for v in values):
        fresh = cls(*values)
        assert copy.copy(fresh) == fresh and copy.deepcopy(fresh) == fresh
        assert pickle.loads(pickle.dumps(fresh)) == fresh


def test_a_sequence_run_shows_no_input_as_its_dataclass_did() -> None:
    run = SequenceRun(None, provides="out", input=None)
    assert repr(run) == ("SequenceRun(output=None, content_type='text/plain', provides='out', requires='', "
                         "input_content_type=None, result=None)")
    assert run == SequenceRun(None, provides="out") and run != SequenceRun(None)
    with pytest.raises(TypeError, match="unhashable"):
        hash(run)


def test_records_match_by_position_and_keyword() -> None:
    def kind(event: object) -> object:
        match event:
            case Data(channel, payload):
                return ("data", channel, bytes(payload))
            case CreditAvailable(channel=channel, available=available):
                return ("credit", channel, available)
            case DeadlineExpired(kind=Deadline.EXIT):
                return "exit deadline"
            case ConnectionClosed():
                return "closed"
        return None

    assert kind(Data(4, b"ab")) == ("data", 4, b"ab")
    assert kind(CreditAvailable(1, 9)) == ("credit", 1, 9)
    assert kind(DeadlineExpired(Deadline.EXIT)) == "exit deadline"
    assert kind(DeadlineExpired(Deadline.STOP)) is None
    assert kind(ConnectionClosed()) == "closed"


def test_importing_the_protocol_and_the_loader_generates_no_methods() -> None:
    """A dataclass compiles each method it makes (``def __create_fn__``); every runner imports these
    modules before its first PANG, where 27 of them cost ~1.8 ms (and 9 more in the loader and topics)."""
    probe = textwrap.dedent("""
        import sys
        made = []
        def count(event, args):
            if event == "compile" and isinstance(args[0], (str, bytes)) and args[0][:16] in (
                    "def __create_fn_", b"def __create_fn_"):
                made.append(args[1])
        sys.addaudithook(count)
        import runner.protocol.connection, runner.protocol.events, runner.protocol.schema
        import runner.sequence.loader, runner.sequence.topics, runner.transport.native
        from runner.protocol import Connection, Ping, Role
        Connection(Role.RUNNER).send(Ping(instance_id="i"), 0.0)  # a handshake fills the Ping in (replaced)
        assert runner.protocol.events.Data(1, b"").channel == 1  # the probe sees the classes
        print(len(made), "dataclasses" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "False"]


@pytest.mark.parametrize("cls", sorted(MESSAGES.values(), key=lambda c: c.code), ids=lambda c: c.__name__)
def test_messages_are_still_dataclasses_to_the_dataclasses_module(cls: type[Message]) -> None:
    """``@message`` reads the class body itself (schema.collect_fields); ``dataclasses.fields``,
    ``replace``, ``asdict`` and ``is_dataclass`` see what ``@dataclass(kw_only=True)`` made before."""
    assert dataclasses.is_dataclass(cls) and not dataclasses.is_dataclass(Message)
    declared = dataclasses.fields(cls)
    assert [f.name for f in declared] == [f.attr for f in cls.wire_fields]
    assert all(f.kw_only and f.init for f in declared)
    assert cls.__match_args__ == ()
    required = {f.name: ({} if "dict" in str(f.type) else "x" if "str" in str(f.type) else 1)
                for f in declared if f.default is dataclasses.MISSING}
    made = cls(**required)
    assert dataclasses.replace(made) == made
    assert dataclasses.asdict(made) == {f.name: getattr(made, f.name) for f in declared}
    for f in declared:  # defaults are class attributes, as a dataclass leaves them; no default, none
        assert cls.__dict__.get(f.name, dataclasses.MISSING) == f.default
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.anything = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="unexpected keyword"):
        dataclasses.replace(made, bogus=1)


def test_replaced_is_dataclasses_replace() -> None:
    ping = Ping(instance_id="i", token="t")
    assert replaced(ping, window=7) == dataclasses.replace(ping, window=7)
    assert replaced(ping, window=7).token == "t" and ping.window == 0
    with pytest.raises(TypeError, match="unexpected keyword"):
        replaced(ping, bogus=1)
