"""Live progress in the terminal: Rich progress bars with percent, ETA and the step in words."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from reelwatch import logs, predict, service
from reelwatch.models import Generation, Status, Variant

REFRESH_S = 0.5


def _eta(g: Generation, svc: service.Service) -> str:
    if not g.active:
        return ""
    guess = predict.estimate(g, svc.clock.now(), svc.renders(g))
    return f"ETA {guess.text}" if guess.text else "ETA --"


async def watch(
    svc: service.Service, ids: Sequence[str], *, console: Console, work: bool = True
) -> list[Generation]:
    """Show the generations live until each is finished; run the worker meanwhile if `work`.

    Prints a line (the notice) as each one completes or fails. Returns them, finished.
    """
    stop = asyncio.Event()
    workers: list[asyncio.Task[None]] = []
    if work:
        # The workers of the watched generations' providers (not only the default one's).
        names = {(await svc.get(gid)).provider for gid in ids}
        workers = [
            asyncio.create_task(svc.engines[name].run(stop, grace_s=5.0), name=f"live-{name}")
            for name in sorted(names)
            if name in svc.engines
        ]
    progress = Progress(
        TextColumn("{task.fields[label]}", markup=False),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[eta]}"),
        TimeElapsedColumn(),
        # The step can quote the provider's error message: no markup, no control characters.
        TextColumn("{task.fields[step]}", markup=False),
        console=console,
        transient=False,
    )
    rows: dict[str, TaskID] = {}
    finished: dict[str, Generation] = {}
    try:
        with progress:
            for gid in ids:
                label = logs.printable(gid[-8:])
                rows[gid] = progress.add_task("", total=100, label=label, eta="", step="")
            while len(finished) < len(ids):
                for gid in ids:
                    if gid in finished:
                        continue
                    g = await svc.get(gid)
                    step = logs.printable(svc.view(g)["step"])
                    progress.update(rows[gid], completed=g.progress, eta=_eta(g, svc), step=step)
                    if g.terminal:
                        finished[gid] = g
                        progress.stop_task(rows[gid])
                        console.print(logs.printable(_notice(g, svc)), markup=False)
                if len(finished) < len(ids):
                    await asyncio.sleep(REFRESH_S)
    finally:
        stop.set()
        for worker in workers:
            await worker
    return [finished[gid] for gid in ids]


def _notice(g: Generation, svc: service.Service) -> str:
    if g.status is Status.COMPLETED:
        video = g.assets.get(Variant.VIDEO)
        where = f": {svc.storage.locate(video.key)}" if video else ""
        return f"Finished {g.id}{where}"
    return f"{g.step} ({g.id})"
