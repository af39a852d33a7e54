"""`reelwatch demo`: the built-in simulator, the worker and a few sample generations, live.

Nothing to configure: SQLite and files in the data folder, and the simulator on a free
loopback port serving every provider's dialect. The samples (`simulator.samples`) go to each
provider; one is refused by moderation and one meets a 429, to show that both are handled; the
others finish with their files on disk.
"""

from __future__ import annotations

import asyncio
import contextlib

from rich.console import Console
from rich.table import Table

from reelwatch import assembly, live, service, serving, simulator
from reelwatch.models import Generation, Variant
from reelwatch.settings import Settings
from reelwatch.simulator import samples
from reelwatch.web import create_app

DEMO_KEY = "sk-reelwatch-demo"


async def run(
    settings: Settings, *, count: int | None, console: Console, stay: bool = False
) -> list[Generation]:
    config = simulator.SimConfig(
        api_key=DEMO_KEY, queue_s=(1.0, 3.0), render_s=(5.0, 10.0), sample_media=True
    )
    with simulator.running(config) as sim:
        console.print(f"Simulator at {sim.origin}", markup=False)
        demo_settings = settings.model_copy(
            update={
                "provider_config": samples.client_config(sim, DEMO_KEY),
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
    demo_settings: Settings,
    sim: simulator.RunningSimulator,
    count: int | None,
    console: Console,
) -> list[Generation]:
    async with assembly.open_service(demo_settings, need_provider=True) as svc:
        data = demo_settings.data_dir.resolve()
        console.print(f"Data in {data} (database {demo_settings.database_url})", markup=False)
        ids = []
        for index in range(len(samples.SAMPLES) if count is None else count):
            sample = samples.SAMPLES[index % len(samples.SAMPLES)]
            request = service.SubmitRequest(
                sample.prompt, provider=sample.provider, model=sample.model, params=sample.params
            )
            g = await svc.submit(request, actor="demo")
            ids.append(g.id)
            console.print(f"Submitted {g.id} ({g.provider} {g.model}): {g.prompt}", markup=False)
            if sample.rate_limited and g.video_id is not None:
                samples.rate_limit_next_status(sim, g.provider, g.video_id)
        # The server's worker moves them; this only watches.
        finished = await live.watch(svc, ids, console=console, work=False)
        console.print(_table(svc, finished))
        console.print(
            "Next: `reelwatch list`, `reelwatch history ID`, `reelwatch status ID --json`",
            markup=False,
        )
        return finished


STEP_CHARS = 60


def _table(svc: service.Service, items: list[Generation]) -> Table:
    table = Table(title="Demo results")
    for column in ("id", "provider", "status", "step", "video file", "bytes", "sha256"):
        table.add_column(column)
    for g in items:
        video = g.assets.get(Variant.VIDEO)
        table.add_row(
            g.id,
            g.provider,
            g.status.value,
            # A provider's reason can be long (a safety message): `status ID` shows it whole.
            g.step if len(g.step) <= STEP_CHARS else g.step[: STEP_CHARS - 1] + "…",
            svc.storage.locate(video.key) if video else "-",
            str(video.bytes) if video else "-",
            video.sha256[:12] if video else "-",
        )
    return table
