"""The worker against the simulator over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib

import pytest

from reelwatch import service
from reelwatch.models import Status, Variant
from tests.conftest import World, step

pytestmark = pytest.mark.asyncio


async def cycle(svc: service.Service) -> dict[str, object]:
    assert svc.engine is not None
    return (await svc.engine.cycle()).to_json()


async def test_submit_then_worker_moves_it_to_completed_with_files(
    svc: service.Service, world: World
) -> None:
    """queued -> in_progress -> downloading -> completed, each asset stored and checksummed."""
    g = await svc.submit(service.SubmitRequest("a paper boat"))
    assert g.status is Status.QUEUED and g.video_id and g.submitted_at is not None
    while g.status is Status.QUEUED:  # the 2 s queue
        g = await step(svc, world, g.id)
    assert g.status is Status.IN_PROGRESS and g.started_at is not None
    world.advance(11)  # past the 10 s render
    summary = await cycle(svc)
    assert summary["results"] == {"success": 1, "failed": 0, "timedOut": 0, "errors": 0}
    g = await svc.get(g.id)
    assert g.status is Status.COMPLETED and g.progress == 100
    assert set(g.assets) == {Variant.VIDEO, Variant.THUMBNAIL, Variant.SPRITESHEET}
    for variant, asset in g.assets.items():
        data = svc.storage.path(asset.key).read_bytes()
        assert len(data) == asset.bytes
        assert hashlib.sha256(data).hexdigest() == asset.sha256
        assert asset.sha256 == world.sim.sim.expected_sha256(g.video_id, variant.value)
    assert g.assets[Variant.VIDEO].content_type == "video/mp4"
    kinds = [e.kind for e in await svc.history(g.id)]
    assert kinds[0] == "created" and kinds[1] == "submitted" and kinds[-1] == "completed"
