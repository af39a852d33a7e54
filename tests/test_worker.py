"""The continuous worker, leases across workers, and admin actions racing a worker."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from reelwatch import assembly, exceptions, lifecycle, service
from reelwatch.models import NewEvent, Status
from reelwatch.providers.base import Ref
from tests.conftest import World, step

pytestmark = pytest.mark.asyncio


async def test_continuous_worker_finishes_generations_on_its_own(world: World) -> None:
    """`run()` moves every generation to completed without anyone polling by hand."""
    fast = world.with_settings(poll_min_seconds=0.05, poll_max_seconds=0.2)
    async with assembly.open_service(fast.settings, need_provider=True) as svc:
        ids = [
            (await svc.submit(service.SubmitRequest(f"run {i} [sim:queue=0.2,render=0.6]"))).id
            for i in range(5)
        ]
        assert svc.engine is not None
        stop = asyncio.Event()
        worker = asyncio.create_task(svc.engine.run(stop))
        try:
            async with asyncio.timeout(20):
                while True:
                    gs = [await svc.get(i) for i in ids]
                    if all(g.terminal for g in gs):
                        break
                    await asyncio.sleep(0.1)
        finally:
            stop.set()
            await worker
        assert {g.status for g in gs} == {Status.COMPLETED}


async def test_graceful_shutdown_finishes_in_flight_work_and_releases(world: World) -> None:
    """On stop, the worker stops claiming, lets the in-flight poll finish and writes it."""
    slow = world.with_settings(poll_min_seconds=0.05, poll_max_seconds=0.2)
    async with assembly.open_service(slow.settings, clock=slow.clock, need_provider=True) as svc:
        g = await svc.submit(service.SubmitRequest("slow answer"))
        slow.advance_to(g.next_poll_at)
        world.sim.sim.inject("retrieve", "latency", seconds=1.0)
        assert svc.engine is not None
        stop = asyncio.Event()
        worker = asyncio.create_task(svc.engine.run(stop, grace_s=5))
        async with asyncio.timeout(5):
            while world.sim.sim.stats()["requests"].get("retrieve", 0) == 0:
                await asyncio.sleep(0.02)
        stop.set()
        await worker
        after = await svc.get(g.id)
        assert after.attempts == g.attempts + 1  # the in-flight answer was applied
        claim = await svc.store.claim(g.id, owner="probe", now=slow.clock.now(), lease_s=5)
        assert claim is not None  # nothing is left leased


async def test_a_dead_workers_lease_expires_and_another_takes_over(
    svc: service.Service, world: World
) -> None:
    """Claims of a worker that died become claimable again after the lease time."""
    g = await svc.submit(service.SubmitRequest("orphan"))
    world.advance_to(g.next_poll_at)
    dead = await svc.store.claim_due(
        owner="dead-worker", now=world.clock.now(), limit=10, lease_s=30
    )
    assert [c.generation.id for c in dead] == [g.id]
    assert svc.engine is not None
    assert (await svc.engine.cycle()).processed == 0  # still leased
    world.advance(31)
    assert (await svc.engine.cycle()).processed == 1
    decision = lifecycle.decide(
        dead[0].generation, lifecycle.Transient("late"), world.clock.now(), svc.engine.policy
    )
    with pytest.raises(exceptions.LeaseLost):  # the dead worker's late write is refused
        await svc.store.apply(dead[0], decision, now=world.clock.now())


async def test_cancel_wins_over_a_worker_in_flight(svc: service.Service, world: World) -> None:
    """An admin cancel voids the lease: the worker's later write cannot undo it."""
    g = await svc.submit(service.SubmitRequest("cancel me"))
    world.advance_to(g.next_poll_at)
    [claim] = await svc.store.claim_due(owner="w", now=world.clock.now(), limit=1, lease_s=60)
    cancelled = await svc.cancel(g.id, actor="alice")
    assert cancelled.status is Status.CANCELLED
    assert svc.engine is not None
    with pytest.raises(exceptions.LeaseLost):
        await svc.engine.advance(claim)
    after = await svc.get(g.id)
    assert after.status is Status.CANCELLED
    last = (await svc.history(g.id))[-1]
    assert last.kind == "cancelled" and last.actor == "alice"


async def test_cancel_of_a_finished_generation_is_refused(
    svc: service.Service, world: World
) -> None:
    """Cancelling a failed generation is not allowed and writes nothing."""
    g = await svc.submit(service.SubmitRequest("[sim:fail=boom,queue=0,render=1] x"))
    while not g.terminal:
        g = await step(svc, world, g.id)
    events = len(await svc.history(g.id))
    with pytest.raises(exceptions.NotAllowed):
        await svc.cancel(g.id)
    assert len(await svc.history(g.id)) == events


async def test_retry_resubmits_a_failed_generation(svc: service.Service, world: World) -> None:
    """Retry creates a new provider job for the same generation and records the old one."""
    g = await svc.submit(service.SubmitRequest("[sim:fail=boom,queue=0,render=1] retry me"))
    while not g.terminal:
        g = await step(svc, world, g.id)
    old_video = g.video_id
    _, cost = await svc.quote_retry(g.id)
    assert cost == 0.4
    again = await svc.retry(g.id, actor="bob", now_too=True)
    assert again.status in (Status.QUEUED, Status.IN_PROGRESS)
    assert again.video_id is not None and again.video_id != old_video
    retry_event = next(e for e in await svc.history(g.id) if e.kind == "retry")
    assert retry_event.data["previous_video_id"] == old_video
    assert retry_event.data["estimated_cost_usd"] == 0.4 and retry_event.actor == "bob"


async def test_retry_of_a_generation_that_did_not_fail_is_refused(svc: service.Service) -> None:
    """Only failed generations can be retried; nothing is written otherwise."""
    g = await svc.submit(service.SubmitRequest("fine"))
    with pytest.raises(exceptions.NotAllowed):
        await svc.quote_retry(g.id)
    with pytest.raises(exceptions.NotAllowed):
        await svc.retry(g.id)
    assert [e.kind for e in await svc.history(g.id)] == ["created", "submitted"]


async def test_reset_polls_a_timed_out_generation_again(world: World) -> None:
    """Reset is free: no new job, the timeout restarts, and it can still complete."""
    quick = world.with_settings(timeout_minutes=0.25)
    async with assembly.open_service(quick.settings, clock=quick.clock, need_provider=True) as svc:
        g = await svc.submit(service.SubmitRequest("slow [sim:queue=0,render=40]"))
        while not g.terminal:
            g = await step(svc, quick, g.id)
        assert g.timed_out
        reset = await svc.reset(g.id, actor="carol")
        assert reset.status is Status.QUEUED and reset.error is None
        assert reset.watch_started_at == quick.clock.now()
        assert world.sim.sim.stats()["creates"] == 1
        done = await svc.reset(g.id, now_too=True)
        quick.advance(30)
        while not done.terminal:
            done = await step(svc, quick, g.id)
        assert done.status is Status.COMPLETED
        assert world.sim.sim.stats()["creates"] == 1


async def test_track_monitors_a_video_created_elsewhere(svc: service.Service, world: World) -> None:
    """`track` adopts an existing provider video and follows it to completion."""
    job = world.sim.sim.create(prompt="made elsewhere [sim:queue=0,render=2]")
    g = await svc.track(job.id)
    assert g.video_id == job.id and g.prompt.startswith("made elsewhere")
    while not g.terminal:
        g = await step(svc, world, g.id)
    assert g.status is Status.COMPLETED
    with pytest.raises(exceptions.InvalidInput):
        await svc.track(job.id)  # already tracked


async def test_track_of_an_unknown_video_changes_nothing(svc: service.Service) -> None:
    """The provider must know the id; otherwise nothing is written."""
    with pytest.raises(exceptions.InvalidInput, match="does not know"):
        await svc.track("video_" + "0" * 48)
    assert (await svc.page()).items == []


async def test_download_expiring_before_it_succeeds_fails_without_resubmitting(
    svc: service.Service, world: World
) -> None:
    """Downloads retry until expires_at; then the generation fails, and nothing is resubmitted."""
    g = await svc.submit(service.SubmitRequest("[sim:queue=0,render=1] doomed download"))
    world.sim.sim.inject("content", "server_error", count=-1, status=500)
    for _ in range(200):
        if g.terminal:
            break
        g = await step(svc, world, g.id)
        if g.status is Status.DOWNLOADING and g.expires_at is not None:
            world.advance_to(g.expires_at - timedelta(seconds=1))
    assert g.status is Status.FAILED and g.error is not None
    assert g.error.code == "asset_expired"
    assert world.sim.sim.stats()["creates"] == 1


async def test_request_budget_limits_claims_per_cycle(world: World) -> None:
    """With a requests-per-minute budget, one cycle asks about no more than it allows."""
    budget = world.with_settings(requests_per_minute=60)  # ten at once, then one a second
    async with assembly.open_service(
        budget.settings, clock=budget.clock, need_provider=True
    ) as svc:
        gs = [await svc.submit(service.SubmitRequest(f"b{i}")) for i in range(14)]
        budget.advance_to(max(g.next_poll_at for g in gs if g.next_poll_at))
        assert svc.engine is not None
        first = await svc.engine.cycle()
        assert first.processed <= 10
        second = await svc.engine.cycle()
        assert second.processed == 0  # the bucket is empty until time passes
        budget.advance(5)
        third = await svc.engine.cycle()
        assert 1 <= third.processed <= 5


async def test_two_workers_never_poll_the_same_generation_at_once(world: World) -> None:
    """Two workers on one database split the due generations; each is asked about once."""
    async with (
        assembly.open_service(world.settings, clock=world.clock, need_provider=True) as one,
        assembly.open_service(world.settings, clock=world.clock, need_provider=True) as two,
    ):
        gs = [await one.submit(service.SubmitRequest(f"shared {i}")) for i in range(24)]
        world.advance_to(max(g.next_poll_at for g in gs if g.next_poll_at))
        world.sim.sim.inject("retrieve", "latency", count=-1, seconds=0.05)
        assert one.engine is not None and two.engine is not None
        first, second = await asyncio.gather(one.engine.cycle(), two.engine.cycle())
        assert first.processed + second.processed == 24
        per_video = world.sim.sim.stats()["videos"]
        assert sorted(per_video[g.video_id]["retrieves"] for g in gs if g.video_id) == [1] * 24


async def test_admin_actions_wait_while_a_create_is_in_flight(
    svc: service.Service, world: World
) -> None:
    """Cancel or reset of a generation whose create is in flight is refused, not raced."""
    g = await svc.submit(service.SubmitRequest("in flight"))
    now = world.clock.now()
    pending = dataclasses.replace(g, status=Status.PENDING, video_id=None)
    claim = await svc.store.create(
        dataclasses.replace(pending, id="gen_inflight"),
        lifecycle.Decision(pending, NewEvent("created")).event,
        owner="submitter",
        now=now,
        lease_s=60,
    )
    for action in (svc.cancel, svc.reset):
        with pytest.raises(exceptions.NotAllowed, match="being submitted"):
            await action(claim.generation.id)
    assert (await svc.get("gen_inflight")).status is Status.PENDING


async def test_a_crash_right_after_a_create_is_reconciled_not_paid_twice(
    svc: service.Service, world: World
) -> None:
    """If the process fails between a create and storing its answer, nothing is resubmitted."""
    assert svc.engine is not None
    provider = svc.engine.provider
    real_create = provider.create

    async def create_then_crash(request: Any) -> Any:
        await real_create(request)
        raise RuntimeError("the process died here")

    provider.create = create_then_crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await svc.submit(service.SubmitRequest("crash after create"))
    provider.create = real_create  # type: ignore[method-assign]
    [g] = (await svc.page()).items
    assert g.status is Status.PENDING and g.submit_ambiguous  # flagged before the create went out
    world.advance(61)  # the dead submitter's lease expires
    await svc.engine.cycle()
    g = await svc.get(g.id)
    assert g.video_id is not None
    assert world.sim.sim.stats()["creates"] == 1


async def test_a_webhook_during_a_download_does_not_restart_it(
    svc: service.Service, world: World
) -> None:
    """The lease of a downloading generation survives a webhook; its write still lands."""
    g = await svc.submit(service.SubmitRequest("[sim:queue=0,render=1] hooked"))
    while g.status is not Status.DOWNLOADING:
        world.advance_to(g.next_poll_at)
        [claim] = await svc.store.claim_due(owner="w", now=world.clock.now(), limit=1, lease_s=60)
        assert svc.engine is not None
        decision = lifecycle.decide(
            claim.generation,
            lifecycle.Polled(await svc.engine.provider.retrieve(Ref(g.video_id or ""))),
            world.clock.now(),
            svc.engine.policy,
        )
        claim, _ = await svc.store.apply(claim, decision, now=world.clock.now(), release=False)
        g = claim.generation
    hook = lifecycle.WebhookReceived("video.completed", "wh_1")
    policy = svc.engine.policy
    outcome = await svc.store.record_webhook(
        "openai/wh_1",
        provider="openai",
        video_id=g.video_id or "",
        event_type=hook.event_type,
        decide=lambda current: lifecycle.decide(current, hook, world.clock.now(), policy),
        now=world.clock.now(),
    )
    assert outcome == "applied"
    finished = lifecycle.decide(
        claim.generation, lifecycle.Downloaded({}), world.clock.now(), svc.engine.policy
    )
    stored, _ = await svc.store.apply(claim, finished, now=world.clock.now())
    assert stored.generation.status is Status.COMPLETED


async def test_cycles_claim_no_more_than_they_can_start(world: World) -> None:
    """`cycle()` claims in waves of `concurrency`: no lease waits for a free slot."""
    narrow = world.with_settings(concurrency=2)
    async with assembly.open_service(
        narrow.settings, clock=narrow.clock, need_provider=True
    ) as svc:
        gs = [await svc.submit(service.SubmitRequest(f"wave {i}")) for i in range(6)]
        narrow.advance_to(max(g.next_poll_at for g in gs if g.next_poll_at))
        world.sim.sim.inject("retrieve", "latency", count=-1, seconds=0.1)
        assert svc.engine is not None
        summary = await svc.engine.cycle()
        assert summary.processed == 6
        assert world.sim.sim.stats()["max_inflight"] <= 2


async def test_an_exhausted_budget_makes_the_worker_wait_not_spin(world: World) -> None:
    """Out of requests, the continuous worker sleeps until a token is back."""
    tight = world.with_settings(requests_per_minute=6)  # one token, then one per 10 s
    async with assembly.open_service(tight.settings, clock=tight.clock, need_provider=True) as svc:
        for i in range(3):
            await svc.submit(service.SubmitRequest(f"budget {i}"))
        tight.advance(30)
        assert svc.engine is not None
        looks = 0
        original = svc.store.next_due_at

        async def counted() -> Any:
            nonlocal looks
            looks += 1
            return await original()

        svc.store.next_due_at = counted  # type: ignore[method-assign]
        stop = asyncio.Event()
        worker = asyncio.create_task(svc.engine.run(stop))
        await asyncio.sleep(1.0)
        stop.set()
        await worker
        assert looks < 20
