"""benchmarks/warm_pages.py accounts for every private page of a warm runner (figures: docs/benchmarks.md)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import warm_pages

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(os.geteuid() != 0, reason="pagemap shows page frames to root only")]


def test_every_private_page_of_a_warm_runner_gets_a_reason() -> None:
    (run,) = anyio.run(warm_pages.measure, 1, 0.2)
    pages = run["pages"]
    reasons = {key.split("|")[0] for key in pages}
    assert reasons <= {"new", "template wrote", "child wrote: no net change", "child wrote: code objects only",
                       "child wrote: str reference counts only", "child wrote: other"}
    assert {"new", "child wrote: other"} <= reasons  # its threads' stacks; its own objects
    # the pages counted are the runner's private memory (smaps_rollup's Private_*), give or take
    # the few pages written between the two readings
    assert abs(sum(pages.values()) * warm_pages.PAGE - run["uss"]) < 0.1 * run["uss"]
    assert "child wrote: other|[heap]" in pages
    report = warm_pages.report([run])
    assert report.startswith("warm runner, idle: USS ") and "| why the page is private | pages | MiB |" in report
