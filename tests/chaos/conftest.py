"""Fixtures of the chaos scenarios: a fresh PostgreSQL database, the simulator as a process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos import harness


@pytest.fixture(autouse=True, scope="session")
def _process_output(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Processes' output files live in pytest's temp dir (kept for the last few runs)."""
    harness.keep_output_under(tmp_path_factory.mktemp("processes"))


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    """Whatever a scenario started is stopped when it ends, even when it failed half-way."""
    yield
    harness.kill_leftovers()


@pytest.fixture
def pg() -> Iterator[str]:
    """A fresh PostgreSQL database of its own (dropped afterwards)."""
    with harness.pg_database() as url:
        yield url


@pytest.fixture
def sim() -> Iterator[harness.Sim]:
    """`reelwatch simulate` as a subprocess on a free port (fast jobs: 0.2 s queue, 1 s render)."""
    with harness.simulator() as running:
        yield running


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """The REELWATCH_DATA_DIR the scenario's processes share (videos land under it)."""
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """The figures a scenario reported travel with its test report (also from xdist workers),
    so the run's summary lists them all (tests/conftest.py)."""
    if call.when == "call":
        for line in harness.REPORTS[item.stash.get(_FIGURES_FROM, 0) :]:
            item.user_properties.append(("chaos_figure", line))
    return (yield)


_FIGURES_FROM = pytest.StashKey[int]()


@pytest.fixture(autouse=True)
def _figures_start(request: pytest.FixtureRequest) -> None:
    """Where this test's figures start in the harness's list."""
    request.node.stash[_FIGURES_FROM] = len(harness.REPORTS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The scenarios run one after another in one xdist worker: they start processes and
    measure time, so they must not race each other for the two cores."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.xdist_group("chaos"))
