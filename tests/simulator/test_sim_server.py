"""Starting and stopping the simulator: `running`, `create_app` and the blocking `serve`."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading

import httpx
import openai
import pytest

from reelwatch.simulator import SimClock, SimConfig, Simulator, create_app, running


def test_running_serves_and_cleans_up() -> None:
    """running() answers on a free port, then stops its thread and frees the port."""
    with running(SimConfig(api_key="k")) as rs:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", rs.base_url)
        with openai.OpenAI(base_url=rs.base_url, api_key="k", max_retries=0) as sdk:
            assert sdk.videos.create(prompt="hello").status == "queued"
        port = int(rs.base_url.split(":")[2].split("/")[0])
        assert f"reelwatch-simulator:{port}" in [t.name for t in threading.enumerate()]
    assert f"reelwatch-simulator:{port}" not in [t.name for t in threading.enumerate()]
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))


def test_two_simulators_are_independent() -> None:
    """Each running() has its own port and state."""
    with running() as first, running() as second:
        assert first.base_url != second.base_url
        first.sim.create(prompt="only in the first")
        assert first.sim.stats()["jobs"] == 1
        assert second.sim.stats()["jobs"] == 0


def test_a_shared_clock_moves_every_simulator() -> None:
    """A clock passed in is the one the simulator reads."""
    clock = SimClock()
    sim = Simulator(SimConfig(queue_s=(1, 1), render_s=(1, 1)), clock=clock)
    job = sim.create(prompt="x")
    clock.advance(2)
    found = sim.find(job.id, clock.now())
    assert found is not None
    assert found[1].status == "completed"


async def test_create_app_works_in_process() -> None:
    """create_app() is a plain ASGI app: usable through httpx's ASGI transport."""
    transport = httpx.ASGITransport(app=create_app(SimConfig()))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://sim", headers={"authorization": "Bearer x"}
    ) as raw:
        created = await raw.post("/v1/videos", json={"prompt": "in process"})
        assert created.status_code == 200
        fetched = await raw.get(f"/v1/videos/{created.json()['id']}")
        assert fetched.json()["status"] == "queued"


def test_serve_prints_its_url_and_stops_on_sigterm() -> None:
    """serve() prints one line with the base URL, answers, and exits cleanly on SIGTERM."""
    code = "from reelwatch.simulator import serve, SimConfig; serve(SimConfig(), port=0)"
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            base_url = line.split()[-1]
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", base_url)
            with httpx.Client(trust_env=False) as raw:
                answer = raw.get(base_url + "/videos", headers={"authorization": "Bearer x"})
            assert answer.json()["object"] == "list"
        finally:
            process.terminate()
            _, stderr = process.communicate(timeout=10)
    # uvicorn shuts down gracefully, then re-raises the signal it caught: exit status -SIGTERM.
    assert process.returncode in (0, -signal.SIGTERM), stderr
    assert "Traceback" not in stderr
