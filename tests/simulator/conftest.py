"""Fixtures: one simulator and one webhook receiver served per session, reset for every test."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any

import httpx
import openai
import pytest
from tests import webhook_receiver as receivers
from tests.webhook_receiver import Receiver

from reelwatch.simulator import RunningSimulator, SimConfig, running
from reelwatch.simulator.server import serve_in_thread

TEST_CONFIG = SimConfig(queue_s=(2.0, 2.0), render_s=(10.0, 10.0))
"""Every job queues exactly 2 s and renders exactly 10 s unless its prompt says otherwise."""
SECRET = "whsec_" + base64.b64encode(b"reelwatch simulator test secret!").decode()


@pytest.fixture
def eventually() -> Callable[..., None]:
    """Wait (bounded, polling every 5 ms) until a predicate holds."""
    return receivers.eventually


@pytest.fixture
def webhook_secret() -> str:
    """The secret the `receiver` fixture configures the simulator to sign with."""
    return SECRET


@pytest.fixture(scope="session")
def served() -> Iterator[RunningSimulator]:
    """The session's simulator server."""
    with running(TEST_CONFIG) as rs:
        yield rs


@pytest.fixture
def rs(served: RunningSimulator) -> RunningSimulator:
    """The simulator server, reset to TEST_CONFIG with no jobs, faults or clock offset."""
    served.sim.reset(TEST_CONFIG)
    return served


@pytest.fixture
def configure(rs: RunningSimulator) -> Callable[..., None]:
    """Reset the simulator to TEST_CONFIG with some fields changed."""

    def apply(**changes: Any) -> None:
        rs.sim.reset(replace(TEST_CONFIG, **changes))

    return apply


@pytest.fixture
def client(rs: RunningSimulator) -> Iterator[openai.OpenAI]:
    """A strict official SDK client that never retries."""
    with openai.OpenAI(
        base_url=rs.base_url, api_key="test", max_retries=0, _strict_response_validation=True
    ) as sdk:
        yield sdk


@pytest.fixture
async def aclient(rs: RunningSimulator) -> AsyncIterator[openai.AsyncOpenAI]:
    """A strict official async SDK client that never retries."""
    async with openai.AsyncOpenAI(
        base_url=rs.base_url, api_key="test", max_retries=0, _strict_response_validation=True
    ) as sdk:
        yield sdk


@pytest.fixture
def http(rs: RunningSimulator) -> Iterator[httpx.Client]:
    """A plain HTTP client on the simulator's origin, with a bearer token."""
    with httpx.Client(
        base_url=rs.origin, headers={"authorization": "Bearer test"}, trust_env=False
    ) as raw:
        yield raw


@pytest.fixture(scope="session")
def served_receiver() -> Iterator[Receiver]:
    """The session's webhook receiver server."""
    receiver = Receiver()
    with serve_in_thread(receiver.app, name="webhook-receiver") as origin:
        receiver.url = origin + "/hook"
        yield receiver


@pytest.fixture
def receiver(served_receiver: Receiver, configure: Callable[..., None]) -> Receiver:
    """An empty webhook receiver, and the simulator configured to deliver to it quickly."""
    served_receiver.reset()
    configure(webhook_url=served_receiver.url, webhook_secret=SECRET, webhook_retry_base_s=0.01)
    return served_receiver
