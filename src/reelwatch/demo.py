"""`reelwatch demo`: the built-in simulator, the worker and a few sample generations, live.

Nothing to configure: SQLite and files in the data folder, and the simulator on a free
loopback port. One sample is refused by moderation and one meets a 429, to show that both are
handled; the others finish with their files on disk.
"""

from __future__ import annotations

import asyncio
import contextlib

from rich.console import Console
from rich.table import Table

from reelwatch import assembly, live, service, serving, simulator
from reelwatch.models import Generation, Variant
from reelwatch.settings import Settings
from reelwatch.web import create_app

SAMPLES = (
    service.SubmitRequest("A paper boat drifting down a rain-soaked street at dusk"),
    service.SubmitRequest(
        "Timelapse of a harbour city from noon to night",
        model="sora-2-pro",
        params={"size": "1280x720"},
    ),
    service.SubmitRequest(
        "[sim:fail=moderation_blocked] A famous actor's face in close-up", params={"seconds": 8}
    ),
    service.SubmitRequest(
        "A red fox trotting through fresh snow, slow motion", params={"seconds": 8}
    ),
)
DEMO_KEY = "sk-reelwatch-demo"


async def run(
    settings: Settings, *, count: int, console: Console, stay: bool = False
) -> list[Generation]:
    config = simulator.SimConfig(
        api_key=DEMO_KEY, queue_s=(1.0, 3.0), render_s=(5.0, 10.0), sample_media=True
    )
    with simulator.running(config) as sim:
        console.print(f"Simulator (OpenAI Videos API shape) at {sim.base_url}", markup=False)
        demo_settings = settings.model_copy(
            update={
                "provider_config": {"openai": {"api_key": DEMO_KEY, "base_url": sim.base_url}},
                "poll_min_seconds": 0.5,
                "poll_max_seconds": 2.0,
            }
        )
        # The dashboard and API, with the worker, as `reelwatch serve` would run them.
        app = create_app(demo_settings)
        with serving.in_thread(app, probe="/healthz", name="reelwatch-demo") as origin:
            console.print(f"Dashboard at {origin}/  (API docs at {origin}/docs)", markup=False)
            finished = await _samples(demo_settings, sim, count, console)
            if stay:
                console.print("Serving until Ctrl-C.", markup=False)
                await _forever()
            return finished


async def _forever() -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.Event().wait()


async def _samples(
    demo_settings: Settings, sim: simulator.RunningSimulator, count: int, console: Console
) -> list[Generation]:
    async with assembly.open_service(demo_settings, need_provider=True) as svc:
        data = demo_settings.data_dir.resolve()
        console.print(f"Data in {data} (database {demo_settings.database_url})", markup=False)
        ids = []
        for index in range(count):
            request = SAMPLES[index % len(SAMPLES)]
            g = await svc.submit(request, actor="demo")
            ids.append(g.id)
            console.print(f"Submitted {g.id} ({g.model}, {g.seconds}s): {g.prompt}", markup=False)
            if index == 3:
                # The next status check of this one answers 429 with Retry-After: 2.
                assert g.video_id is not None
                sim.sim.inject("retrieve", "rate_limit", video_id=g.video_id, retry_after=2)
        # The server's worker moves them; this only watches.
        finished = await live.watch(svc, ids, console=console, work=False)
        console.print(_table(svc, finished))
        console.print(
            "Next: `reelwatch list`, `reelwatch history ID`, `reelwatch status ID --json`",
            markup=False,
        )
        return finished


def _table(svc: service.Service, items: list[Generation]) -> Table:
    table = Table(title="Demo results")
    for column in ("id", "status", "step", "video file", "bytes", "sha256"):
        table.add_column(column)
    for g in items:
        video = g.assets.get(Variant.VIDEO)
        table.add_row(
            g.id,
            g.status.value,
            g.step,
            str(svc.storage.path(video.key)) if video else "-",
            str(video.bytes) if video else "-",
            video.sha256[:12] if video else "-",
        )
    return table
