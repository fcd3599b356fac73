"""Where a warm runner's private memory goes: its private pages, each with the reason it is private.

    python benchmarks/warm_pages.py [--runs N] [--settle S] [--many N] [--json FILE]

A warm runner (host_bridge.zygote) shares every page with its template until one of the two
writes it. This starts a ``Bridge(warm=True)``, records the frame of each of the template's pages,
forks ``echo-events`` runners one after the other, lets each settle (idle, Sequence waiting on
events), and sorts each of the runner's private pages (``/proc/PID/pagemap``: present and mapped
once) into:

- **new**: the template does not map that page (thread stacks, malloc's new heap and arenas);
- **template wrote**: the runner still has the frame the template had before the fork: the
  *template* wrote the page afterwards (its round between two forks, runner/warm_template.py);
- **child wrote**, by what differs between the runner's page and the template's (word by word):
  - *no net change*: written and written back (a reference count up and down, a block taken and
    given back),
  - *code objects only*: the changed words all lie in code objects (CPython 3.11 writes a code
    object's warm-up count, its quickened bytecode and its specialising instructions' counters),
  - *str reference counts only*: the changed words are all reference counts of str objects
    (mostly attribute names: CPython's type attribute cache holds a reference to each name it
    caches, so a lookup that misses writes the count of the name it caches and of the one it evicts),
  - *other*: new objects in free blocks, dicts, lists, interpreter state.

A page both wrote is "template wrote" when the template wrote it first (the runner then kept the
old frame and wrote it in place), "child wrote" otherwise. ``--many N`` keeps N runners at once,
as ``bench_start.many_idle`` does, each classified against the template's frames just before its
own request: a page the template writes while serving a request, before its fork, and again for
the next one is then private to every runner but the last (read as "child wrote: no net change":
its content is the template's), and so the many-Instance USS minus the last runner's is what
serving the later forks cost each one.

Frames need CAP_SYS_ADMIN (root): without it pagemap hides them and only the totals are printed.
The object layout read here (a header of reference count and type; a type's name at offset 24)
is CPython's on 64-bit builds; the code/str split is CPython 3.11's. Figures in docs/benchmarks.md
("Warm starts: what a fork costs").
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import anyio
from common import SEQUENCES, private_bytes, rss_bytes

from host_bridge import Bridge

PAGE = 4096
WORDS = PAGE // 8
PRESENT, EXCLUSIVE, PFN_MASK = 1 << 63, 1 << 56, (1 << 55) - 1
USER_TOP = 1 << 47


def _maps(pid: int) -> Iterator[tuple[int, int, str, str]]:
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            yield lo, hi, parts[1], parts[5].strip() if len(parts) > 5 else ""


def _pagemap(pid: int, lo: int, hi: int) -> tuple[int, ...]:
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(lo // PAGE * 8)
        data = f.read((hi - lo) // PAGE * 8)
    return struct.unpack(f"{len(data) // 8}Q", data)


def _region(name: str, lo: int, hi: int) -> str:
    if name.startswith("/"):
        return name.rsplit("/", 1)[-1]
    return name or f"anonymous {(hi - lo) // 1024} KiB"


def frames(pid: int) -> dict[int, int]:
    """Page address -> frame number, for every present page of ``pid``."""
    out: dict[int, int] = {}
    for lo, hi, _, name in _maps(pid):
        if name == "[vsyscall]":
            continue
        try:
            entries = _pagemap(pid, lo, hi)
        except OSError:
            continue
        for i, entry in enumerate(entries):
            if entry & PRESENT:
                out[lo + i * PAGE] = entry & PFN_MASK
    return out


class Memory:
    """Reads another process's memory (/proc/PID/mem) and names the types of objects in it."""

    def __init__(self, pid: int) -> None:
        self.mem = open(f"/proc/{pid}/mem", "rb", buffering=0)  # noqa: SIM115 - closed by close()
        self._type_names: dict[int, str | None] = {}

    def read(self, address: int, size: int) -> bytes:
        self.mem.seek(address)
        return self.mem.read(size)

    def type_name(self, address: int) -> str | None:
        """The name of the type object at ``address``, None if there is none (checked: its own
        type is a type whose name ends in "type", e.g. ``type`` or ``ABCMeta``'s ``type``)."""
        if address in self._type_names:
            return self._type_names[address]
        name = None
        if address % 8 == 0 and PAGE < address < USER_TOP:
            try:
                name = self._checked_type_name(address)
            except (OSError, ValueError, struct.error):
                name = None
        self._type_names[address] = name
        return name

    def _checked_type_name(self, address: int) -> str | None:
        _, meta, _, name_at = struct.unpack("4Q", self.read(address, 32))
        if not PAGE < meta < USER_TOP:
            return None
        _, _, _, meta_name_at = struct.unpack("4Q", self.read(meta, 32))
        meta_name = self._c_string(meta_name_at)
        if meta_name is None or not (meta_name.endswith("type") or "Meta" in meta_name):
            return None
        return self._c_string(name_at)

    def _c_string(self, address: int) -> str | None:
        if not PAGE < address < USER_TOP:
            return None
        raw = self.read(address, 80).split(b"\0", 1)[0]
        text = raw.decode("ascii", "replace")
        return text if raw and text.isprintable() else None

    def close(self) -> None:
        self.mem.close()


def _owner(index: int, words: tuple[int, ...], template: Memory) -> str:
    """The type of the object the changed word ``index`` lies in: the nearest header (a small
    reference count followed by a type) at or before it, within 2 KiB of the page."""
    for k in range(index, max(-1, index - 256), -1):
        if k + 1 < WORDS and words[k] < 1 << 40:
            name = template.type_name(words[k + 1])
            if name:
                return f"{name} refcount" if k == index else name
    return "?"


def _why_child_wrote(ours: bytes, theirs: bytes, template: Memory) -> str:
    a, b = struct.unpack(f"{WORDS}Q", ours), struct.unpack(f"{WORDS}Q", theirs)
    changed = [j for j in range(WORDS) if a[j] != b[j]]
    if not changed:
        return "child wrote: no net change"
    owners = {_owner(j, b, template) for j in changed}
    if owners <= {"code", "code refcount"}:
        return "child wrote: code objects only"
    if owners <= {"str refcount"}:
        return "child wrote: str reference counts only"
    return "child wrote: other"


def classify(runner: int, template_pid: int, before_fork: dict[int, int]) -> Counter[tuple[str, str]]:
    """(reason, region) -> number of the runner's private pages."""
    counts: Counter[tuple[str, str]] = Counter()
    ours, template = Memory(runner), Memory(template_pid)
    try:
        for lo, hi, perms, name in _maps(runner):
            if name == "[vsyscall]":
                continue
            try:
                entries = _pagemap(runner, lo, hi)
                theirs = _pagemap(template_pid, lo, hi)
            except OSError:  # the mapping went away while we read (a thread's stack): nothing to count
                continue
            for i, entry in enumerate(entries):
                if not (entry & PRESENT and entry & EXCLUSIVE):
                    continue
                address = lo + i * PAGE
                region = _region(name, lo, hi)
                if i >= len(theirs) or not theirs[i] & PRESENT:
                    counts["new", region] += 1
                elif entry & PFN_MASK == before_fork.get(address):
                    counts["template wrote", region] += 1
                elif "w" not in perms:
                    counts["child wrote: other", region] += 1
                else:
                    counts[_why_child_wrote(ours.read(address, PAGE), template.read(address, PAGE), template),
                           region] += 1
    finally:
        ours.close()
        template.close()
    return counts


async def _template_pid(bridge: Bridge) -> int:
    """The pid of the bridge's warm-start template, once it is ready (or why there is none)."""
    assert bridge.warm is not None
    zygote = await bridge.warm.ready()
    if zygote is None or zygote.pid is None:
        raise SystemExit(f"warm starts unavailable: {bridge.warm.error}")
    return zygote.pid


async def measure(runs: int, settle: float) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    async with Bridge(warm=True) as bridge:
        template_pid = await _template_pid(bridge)
        for _ in range(runs):
            before_fork = frames(template_pid)
            inst = await bridge.spawn(str(SEQUENCES / "echo-events"))
            ready = inst.events("ready")
            inst.discard("stdout", "stderr", "log")
            with anyio.fail_after(30):
                await ready.receive()
            await anyio.sleep(settle)
            assert inst.pid is not None
            counts = classify(inst.pid, template_pid, before_fork)
            results.append({"uss": private_bytes(inst.pid), "rss": rss_bytes(inst.pid),
                            "pages": {f"{why}|{region}": n for (why, region), n in counts.items()}})
            await inst.kill()
            with anyio.fail_after(30):
                await inst.wait()
    return results


async def measure_many(count: int, settle: float) -> list[dict[str, Any]]:
    """``count`` runners spawned one after the other and all kept (as bench_start.many_idle does),
    each classified against the template's frames before its own fork: a runner's "template
    wrote" pages are then every page the template wrote while serving the later forks."""
    results: list[dict[str, Any]] = []
    async with Bridge(warm=True) as bridge:
        template_pid = await _template_pid(bridge)
        insts, readies, before = [], [], []
        for _ in range(count):
            before.append(frames(template_pid))
            inst = await bridge.spawn(str(SEQUENCES / "echo-events"))
            readies.append(inst.events("ready"))
            inst.discard("stdout", "stderr", "log")
            insts.append(inst)
        with anyio.fail_after(120):
            for ready in readies:
                await ready.receive()
        await anyio.sleep(settle)
        for inst, before_fork in zip(insts, before):
            assert inst.pid is not None
            counts = classify(inst.pid, template_pid, before_fork)
            results.append({"uss": private_bytes(inst.pid), "rss": rss_bytes(inst.pid),
                            "pages": {f"{why}|{region}": n for (why, region), n in counts.items()}})
        for inst in insts:
            await inst.kill()
        with anyio.fail_after(120):
            for inst in insts:
                await inst.wait()
    return results


def report_many(results: list[dict[str, Any]]) -> str:
    """How many pages each runner keeps because the template wrote them after its fork, by position."""
    wrote = [sum(n for k, n in r["pages"].items() if k.startswith("template wrote|")) for r in results]
    count = len(results)
    at = [0, 1, count // 4, count // 2, 3 * count // 4, count - 2, count - 1]
    lines = ["template wrote, by fork (first ... last): "
             + ", ".join(f"#{i + 1}: {wrote[i]}" for i in sorted(set(at)) if 0 <= i < count)]
    last_wrote: Counter[str] = Counter()
    for key, n in results[0]["pages"].items():
        if key.startswith("template wrote|"):
            last_wrote[key.split("|")[1]] += n
    lines.append("the first fork's template-written pages by region: "
                 + ", ".join(f"{region} {n}" for region, n in last_wrote.most_common(12)))
    return "\n".join(lines)


def report(results: list[dict[str, Any]]) -> str:
    def median_of(key: str) -> float:
        return statistics.median(r["pages"].get(key, 0) for r in results)

    keys = sorted({k for r in results for k in r["pages"]})
    by_reason: Counter[str] = Counter()
    for key in keys:
        by_reason[key.split("|")[0]] += int(median_of(key))
    uss = statistics.median(r["uss"] for r in results) / 2**20
    rss = statistics.median(r["rss"] for r in results) / 2**20
    lines = [f"warm runner, idle: USS {uss:.2f} MiB, RSS {rss:.2f} MiB ({len(results)} runs, medians)",
             "", "| why the page is private | pages | MiB |", "|---|---|---|"]
    for reason, pages in by_reason.most_common():
        lines.append(f"| {reason} | {pages} | {pages * PAGE / 2**20:.2f} |")
    lines += ["", "| why | region | pages |", "|---|---|---|"]
    for key in sorted(keys, key=median_of, reverse=True)[:25]:
        why, region = key.split("|")
        lines.append(f"| {why} | {region} | {median_of(key):.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle", type=float, default=1.0, help="seconds idle before reading (default 1)")
    parser.add_argument("--many", type=int, default=0,
                        help="instead: this many runners kept at once, each classified against the template before "
                             "its own fork (the later forks' writes included)")
    parser.add_argument("--json", help="also write every run's counts here")
    args = parser.parse_args(argv)
    if args.many:
        results = anyio.run(measure_many, args.many, args.settle)
        print(report(results))
        print(report_many(results))
    else:
        results = anyio.run(measure, args.runs, args.settle)
        print(report(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
