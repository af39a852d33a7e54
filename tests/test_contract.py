"""The provider contract: one suite, run against every adapter and its dialect of the simulator.

Each provider subclasses `Contract` with what differs (its routes in the simulator, its words
for moderation and for a status nobody knows, how its webhooks are signed); the tests are the
same for all. Everything goes through the service and the engine over real HTTP, on SQLite and
on PostgreSQL. The deliveries are signed here with the `standardwebhooks` package and
`cryptography`, not with reelwatch's own code, so a verifier that agreed only with itself would
fail.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
import standardwebhooks
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from reelwatch import assembly, clock, exceptions, service, simulator
from reelwatch.models import ErrorInfo, Generation, Status, Variant
from reelwatch.providers.base import CreateRequest, WebhookRejected
from reelwatch.simulator import replicate as sim_replicate
from reelwatch.simulator import veo as sim_veo
from tests.conftest import World, image_file, make_settings

TOKEN = "sk-test"
OPENAI_SECRET = "whsec_" + base64.b64encode(b"contract-openai-secret-0123456").decode()
REPLICATE_SECRET = "whsec_" + base64.b64encode(b"contract-replicate-secret-0123").decode()
FAL_SEED = "11" * 32  # the simulator signs fal deliveries with this Ed25519 seed
WRONG_SEED = "22" * 32
WRONG_SECRET = "whsec_" + base64.b64encode(b"not-the-secret-at-all-01234567").decode()
VEO_SECRET = "whsec_" + base64.b64encode(b"contract-veo-secret-0123456789").decode()
VEO_PROJECT = "reelwatch-test"
LIFETIME_S = 600.0  # the simulator's copy of a finished video lives this long (OpenAI, fal)


class Contract:
    """What every provider must do; subclasses say how each provider does it."""

    name: ClassVar[str]
    create_route: ClassVar[str]
    poll_route: ClassVar[str]
    files_route: ClassVar[str]
    moderation_code: ClassVar[str]
    unknown_word: ClassVar[str]
    lists: ClassVar[bool]
    cancels: ClassVar[bool]
    keeps_assets_s: ClassVar[float] = LIFETIME_S
    settings: ClassVar[dict[str, Any]] = {}  # what else this provider's world needs

    def provider_config(self, sim: simulator.RunningSimulator) -> dict[str, Any]:
        raise NotImplementedError

    def job_name(self, model: str, job_id: str) -> str:
        """How a user of this provider names a job to `track`."""
        return job_id

    def delivery(
        self, job_id: str, *, at: datetime, forged: bool = False
    ) -> tuple[dict[str, str], bytes]:
        """A signed webhook saying the job ended (with the wrong key if `forged`)."""
        raise NotImplementedError

    # --- the world each test runs in ------------------------------------------------------------

    @pytest.fixture
    def contract_sim(self) -> Iterator[simulator.RunningSimulator]:
        config = simulator.SimConfig(
            api_key=TOKEN,
            queue_s=(1.0, 1.0),
            render_s=(6.0, 6.0),
            expires_after_s=LIFETIME_S,
            replicate_webhook_secret=REPLICATE_SECRET,
            fal_webhook_key=FAL_SEED,
        )
        with simulator.running(config) as running:
            yield running

    @pytest.fixture
    def world(self, tmp_path: Path, db_url: str, contract_sim: simulator.RunningSimulator) -> World:
        start = datetime.fromtimestamp(contract_sim.sim.clock.now(), UTC)
        settings = make_settings(
            tmp_path,
            db_url,
            contract_sim.base_url,
            default_provider=self.name,
            provider_config={self.name: self.provider_config(contract_sim)},
            **self.settings,
        )
        return World(settings, clock.FakeClock(start), contract_sim)

    @pytest.fixture
    async def svc(self, world: World) -> AsyncIterator[service.Service]:
        async with assembly.open_service(world.settings, clock=world.clock) as opened:
            yield opened

    async def settle(
        self,
        svc: service.Service,
        world: World,
        generation_id: str,
        until: Callable[[Generation], bool] = lambda g: g.terminal,
        steps: int = 80,
    ) -> Generation:
        """Run the provider's worker, moving the clocks to each next look, until `until`."""
        runner = svc.require_engine(self.name)
        for _ in range(steps):
            g = await svc.get(generation_id)
            if until(g):
                return g
            world.advance_to(g.next_poll_at)
            await runner.cycle()
        raise AssertionError(f"not settled after {steps} steps: {await svc.get(generation_id)}")

    async def failure(self, svc: service.Service, world: World, generation_id: str) -> ErrorInfo:
        """Settle the generation; it must have failed, with a code and a message."""
        done = await self.settle(svc, world, generation_id)
        assert done.status is Status.FAILED, done
        assert done.error is not None and done.error.code and done.error.message
        return done.error

    def requests(self, world: World, route: str) -> int:
        return int(world.sim.sim.stats()["requests"].get(route, 0))

    async def submit(self, svc: service.Service, prompt: str) -> Generation:
        return await svc.submit(service.SubmitRequest(prompt, provider=self.name))

    # --- the contract ---------------------------------------------------------------------------

    async def test_a_generation_completes_with_its_video_stored_and_checksummed(
        self, svc: service.Service, world: World
    ) -> None:
        g = await self.submit(svc, "[sim:queue=1,render=6] a paper boat")
        assert g.provider == self.name and g.endpoint is not None and g.video_id
        done = await self.settle(svc, world, g.id)
        assert done.status is Status.COMPLETED, done
        video = done.assets[Variant.VIDEO]
        stored = svc.storage.path(video.key).read_bytes()
        assert hashlib.sha256(stored).hexdigest() == video.sha256
        assert video.sha256 == world.sim.sim.expected_sha256(done.video_id or "")
        kinds = [e.kind for e in await svc.history(g.id)]
        assert kinds[0] == "created" and kinds[-1] == "completed"

    async def test_a_job_created_elsewhere_is_tracked_to_the_end(
        self, svc: service.Service, world: World
    ) -> None:
        provider = svc.require_engine(self.name).provider
        model = provider.catalogue.default_model
        made = await provider.create(CreateRequest("[sim:queue=0,render=4] made elsewhere", model))
        with pytest.raises(exceptions.InvalidInput, match="video_id"):
            await svc.track("no-such-job-0", provider=self.name)
        g = await svc.track(self.job_name(model, made.video_id), provider=self.name)
        assert g.video_id == made.video_id and g.provider == self.name
        done = await self.settle(svc, world, g.id)
        assert done.status is Status.COMPLETED, done
        assert done.assets[Variant.VIDEO].sha256 == world.sim.sim.expected_sha256(made.video_id)
        with pytest.raises(exceptions.InvalidInput, match="already tracked"):
            await svc.track(self.job_name(model, made.video_id), provider=self.name)

    async def test_a_failure_is_failed_with_the_providers_reason(
        self, svc: service.Service, world: World
    ) -> None:
        g = await self.submit(svc, "[sim:queue=0,render=2,fail=internal_error] doomed")
        await self.failure(svc, world, g.id)

    async def test_moderation_is_failed_with_a_moderation_code(
        self, svc: service.Service, world: World
    ) -> None:
        g = await self.submit(svc, "[sim:queue=0,render=2,fail=moderation_blocked] a face")
        assert (await self.failure(svc, world, g.id)).code == self.moderation_code

    async def test_a_job_the_provider_forgot_is_failed_as_not_found(
        self, svc: service.Service, world: World
    ) -> None:
        g = await self.submit(svc, "[sim:queue=0,render=60,vanish_after=3] gone")
        assert (await self.failure(svc, world, g.id)).code == "not_found"

    async def test_a_429_is_waited_out_with_nothing_sent_inside_the_window(
        self, svc: service.Service, world: World
    ) -> None:
        g = await self.submit(svc, "[sim:queue=0,render=3600] patient")
        world.sim.sim.inject(self.poll_route, "rate_limit", video_id=g.video_id, retry_after=30)
        runner = svc.require_engine(self.name)
        world.advance_to(g.next_poll_at)
        before = self.requests(world, self.poll_route)
        await runner.cycle()
        limited = await svc.get(g.id)
        assert self.requests(world, self.poll_route) == before + 1  # the one that met the 429
        hit_at = world.clock.now()
        assert limited.next_poll_at is not None
        assert limited.next_poll_at >= hit_at + timedelta(seconds=30)
        for _ in range(5):  # the window passes in steps: nothing goes out inside it
            world.advance(5)
            await runner.cycle()
        assert self.requests(world, self.poll_route) == before + 1
        world.advance_to(limited.next_poll_at)
        await runner.cycle()
        assert self.requests(world, self.poll_route) == before + 2
        assert (await svc.get(g.id)).active

    async def test_a_burst_of_5xx_is_ridden_out(self, svc: service.Service, world: World) -> None:
        g = await self.submit(svc, "[sim:queue=0,render=8] sturdy")
        world.sim.sim.inject(self.poll_route, "server_error", count=3, video_id=g.video_id)
        done = await self.settle(svc, world, g.id)
        assert done.status is Status.COMPLETED
        kinds = [e.kind for e in await svc.history(g.id)]
        assert kinds.count("retry_scheduled") == 3

    async def test_an_unknown_status_is_shown_to_a_person_and_never_timed_out(
        self, svc: service.Service, world: World
    ) -> None:
        g = await self.submit(
            svc, f"[sim:queue=0,render=3600,unknown_status={self.unknown_word}] ?"
        )
        odd = await self.settle(svc, world, g.id, until=lambda g: g.attention is not None)
        assert odd.active and self.unknown_word in (odd.attention or "")
        world.advance(world.settings.timeout_seconds + 60)
        await svc.require_engine(self.name).cycle()
        later = await svc.get(g.id)
        assert later.active and not later.timed_out
        assert later.attention is not None

    async def test_a_lost_create_is_found_or_handed_to_a_person_never_paid_twice(
        self, svc: service.Service, world: World
    ) -> None:
        world.sim.sim.inject(self.create_route, "create_then_fail")
        g = await self.submit(svc, "[sim:queue=0,render=30] lost in transit")
        assert g.status is Status.PENDING and g.submit_ambiguous and g.video_id is None
        after = await self.settle(
            svc, world, g.id, until=lambda g: not g.submit_ambiguous or g.terminal
        )
        assert world.sim.sim.stats()["creates"] == 1
        if self.lists:
            assert after.video_id is not None and after.active
        else:
            assert after.status is Status.FAILED
            assert after.error is not None and after.error.code == "create_unknown"

    async def test_a_429_on_create_is_sent_again_later_never_taken_for_lost(
        self, svc: service.Service, world: World
    ) -> None:
        world.sim.sim.inject(self.create_route, "rate_limit", retry_after=2)
        g = await self.submit(svc, "[sim:queue=0,render=4] refused at first")
        assert g.status is Status.PENDING and not g.submit_ambiguous and g.video_id is None
        done = await self.settle(svc, world, g.id)
        assert done.status is Status.COMPLETED, done
        assert world.sim.sim.stats()["creates"] == 1
        assert self.requests(world, self.create_route) == 2

    async def test_cancel_stops_the_job_at_the_provider_where_it_can(
        self, svc: service.Service, world: World
    ) -> None:
        g = await self.submit(svc, "[sim:queue=0,render=600] unwanted")
        cancelled = await svc.cancel(g.id)
        assert cancelled.status is Status.CANCELLED
        [event] = [e for e in await svc.history(g.id) if e.kind == "cancelled"]
        assert event.data["remote_cancel"] == ("requested" if self.cancels else None)
        cancel_route = self.create_route.replace("create", "cancel").replace("submit", "cancel")
        assert self.requests(world, cancel_route) == (1 if self.cancels else 0)

    async def test_a_copy_that_expired_before_it_was_fetched_fails_as_asset_expired(
        self, svc: service.Service, world: World
    ) -> None:
        world.sim.sim.inject(self.files_route, "server_error", count=-1)
        g = await self.submit(svc, "[sim:queue=0,render=2] too late")
        await self.settle(svc, world, g.id, until=lambda g: g.status is Status.DOWNLOADING)
        world.advance(self.keeps_assets_s + 60)
        world.sim.sim.reset_faults()
        assert (await self.failure(svc, world, g.id)).code == "asset_expired"

    async def test_webhooks_signed_right_count_once_the_rest_are_refused(
        self, svc: service.Service, world: World
    ) -> None:
        g = await self.submit(svc, "[sim:queue=0,render=600] hooked")
        assert g.video_id is not None
        now = world.clock.now()
        headers, body = self.delivery(g.video_id, at=now)
        assert await svc.webhook(self.name, headers, body) == "applied"
        assert await svc.webhook(self.name, headers, body) == "duplicate"
        forged_headers, forged_body = self.delivery(g.video_id, at=now, forged=True)
        stale_headers, stale_body = self.delivery(g.video_id, at=now - timedelta(seconds=900))
        # Change the id's first character to one it is not (an id starting with "x" once made
        # the "tampered" body identical to the signed one).
        swapped = "y" if g.video_id[0] == "x" else "x"
        tampered = body.replace(g.video_id.encode(), (swapped + g.video_id[1:]).encode())
        assert tampered != body
        for bad_headers, bad_body in (
            (forged_headers, forged_body),
            (stale_headers, stale_body),
            (headers, tampered),
        ):
            with pytest.raises(WebhookRejected):
                await svc.webhook(self.name, bad_headers, bad_body)
        kinds = [e.kind for e in await svc.history(g.id)]
        assert kinds.count("webhook") == 1

    async def test_a_reference_image_is_sent_or_refused_never_dropped(
        self, svc: service.Service, world: World, tmp_path: Path
    ) -> None:
        image = image_file(tmp_path / "first-frame.png")
        request = service.SubmitRequest("from a frame", provider=self.name, input_reference=image)
        before = self.requests(world, self.create_route)
        if svc.catalogue(self.name).capabilities.input_reference:
            g = await svc.submit(request)
            assert g.input_reference is not None and g.video_id is not None
            assert self.requests(world, self.create_route) == before + 1
            return
        with pytest.raises(exceptions.InvalidInput, match="input_reference"):
            await svc.submit(request)
        assert self.requests(world, self.create_route) == before
        assert (await svc.page()).items == []

    async def test_a_missing_credential_is_one_line_naming_the_variable(self, world: World) -> None:
        bare = world.settings.model_copy(update={"provider_config": {}})
        async with assembly.open_service(bare, clock=world.clock) as opened:
            with pytest.raises(exceptions.ConfigError) as missing:
                await opened.submit(service.SubmitRequest("hello", provider=self.name))
        assert "\n" not in missing.value.message
        assert any(v in missing.value.message for v in ("API_KEY", "API_TOKEN", "FAL_KEY"))


def _standard_delivery(
    secret: str, body: dict[str, Any], at: datetime, forged: bool
) -> tuple[dict[str, str], bytes]:
    raw = json.dumps(body).encode()
    key = WRONG_SECRET if forged else secret
    webhook_id = "msg_" + hashlib.sha256(raw).hexdigest()[:24]
    signature = standardwebhooks.Webhook(key).sign(webhook_id, at, raw)
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }
    return headers, raw


class TestOpenAI(Contract):
    name = "openai"
    create_route = "create"
    poll_route = "retrieve"
    files_route = "content"
    moderation_code = "moderation_blocked"
    unknown_word = "paused"
    lists = True
    cancels = False

    def provider_config(self, sim: simulator.RunningSimulator) -> dict[str, Any]:
        return {"api_key": TOKEN, "base_url": sim.base_url, "webhook_secret": OPENAI_SECRET}

    def delivery(
        self, job_id: str, *, at: datetime, forged: bool = False
    ) -> tuple[dict[str, str], bytes]:
        body = {"id": "evt_1", "type": "video.completed", "data": {"id": job_id}}
        return _standard_delivery(OPENAI_SECRET, body, at, forged)

    async def test_content_not_ready_yet_is_retried_not_expired(
        self, svc: service.Service, world: World
    ) -> None:
        """The API answers 404 "not ready" on /content just after completion: try again."""
        g = await self.submit(svc, "[sim:queue=0,render=3] a moment late")
        world.sim.sim.inject(self.files_route, "error", status=404, count=2)
        done = await self.settle(svc, world, g.id)
        assert done.status is Status.COMPLETED, done


class TestReplicate(Contract):
    name = "replicate"
    create_route = "replicate.create"
    poll_route = "replicate.get"
    files_route = "replicate.files"
    moderation_code = "moderation"
    unknown_word = "paused"
    lists = True
    cancels = True
    keeps_assets_s = 3600.0  # Replicate removes a prediction's files an hour after it ends

    def provider_config(self, sim: simulator.RunningSimulator) -> dict[str, Any]:
        return {
            "api_token": TOKEN,
            "base_url": sim.replicate_base_url,
            "webhook_secret": REPLICATE_SECRET,
        }

    def delivery(
        self, job_id: str, *, at: datetime, forged: bool = False
    ) -> tuple[dict[str, str], bytes]:
        body = {"id": job_id, "status": "succeeded", "output": None}
        return _standard_delivery(REPLICATE_SECRET, body, at, forged)

    async def test_a_lost_create_pinned_to_a_version_is_found(
        self, svc: service.Service, world: World
    ) -> None:
        """The list names the model without the version the request pinned."""
        model = "google/veo-3-fast:" + sim_replicate.version_id("google/veo-3-fast")
        world.sim.sim.inject(self.create_route, "create_then_fail")
        g = await svc.submit(
            service.SubmitRequest("[sim:queue=0,render=30] pinned", provider=self.name, model=model)
        )
        assert g.submit_ambiguous
        after = await self.settle(svc, world, g.id, until=lambda g: not g.submit_ambiguous)
        assert after.video_id is not None and after.active
        assert world.sim.sim.stats()["creates"] == 1


class TestFal(Contract):
    name = "fal"
    create_route = "fal.submit"
    poll_route = "fal.status"
    files_route = "fal.files"
    moderation_code = "moderation"
    unknown_word = "FAILED"
    lists = False
    cancels = True
    # fal's webhooks need no secret: they are on when this server has a public URL.
    settings: ClassVar[dict[str, Any]] = {"public_url": "http://127.0.0.1:9"}

    def provider_config(self, sim: simulator.RunningSimulator) -> dict[str, Any]:
        return {"key": TOKEN, "base_url": sim.fal_queue_url, "jwks_url": sim.fal_jwks_url}

    def job_name(self, model: str, job_id: str) -> str:
        return f"{model}/{job_id}"  # a request id alone does not say which app's queue

    async def test_a_submit_that_never_left_is_sent_again_not_handed_to_a_person(
        self, world: World
    ) -> None:
        closed = {**self.provider_config(world.sim), "base_url": "http://127.0.0.1:9/fal/"}
        unreachable = world.with_settings(provider_config={self.name: closed})
        async with assembly.open_service(unreachable.settings, clock=world.clock) as svc:
            g = await self.submit(svc, "[sim:queue=0,render=3] never sent")
            assert g.status is Status.PENDING and not g.submit_ambiguous
            world.advance_to(g.next_poll_at)
            await svc.require_engine(self.name).cycle()
            again = await svc.get(g.id)
        assert again.status is Status.PENDING and again.error is None and again.attempts >= 2
        assert world.sim.sim.stats()["creates"] == 0

    async def test_a_refused_result_read_is_retried_not_failed(
        self, svc: service.Service, world: World
    ) -> None:
        """A 401 on the result GET (a rotated key) is not the job's fault."""
        g = await self.submit(svc, "[sim:queue=0,render=3] kept")
        world.sim.sim.inject("fal.result", "error", status=401, count=1)
        done = await self.settle(svc, world, g.id)
        assert done.status is Status.COMPLETED, done
        assert self.requests(world, "fal.result") >= 2

    async def test_endpoint_ids_the_sdk_cannot_read_are_refused(self, svc: service.Service) -> None:
        with pytest.raises(exceptions.InvalidInput, match="model"):
            await svc.submit(service.SubmitRequest("x", provider=self.name, model="workflows/x"))
        with pytest.raises(exceptions.InvalidInput, match="video_id"):
            await svc.track("workflows/x/764cabcf-b745-4b3e", provider=self.name)
        assert (await svc.page()).items == []

    async def test_forged_deliveries_cannot_make_it_fetch_keys_again_and_again(
        self, svc: service.Service, world: World
    ) -> None:
        g = await self.submit(svc, "[sim:queue=0,render=600] long")
        at = datetime.fromtimestamp(world.sim.sim.clock.now(), UTC)
        forged = [self.delivery(g.video_id or "", at=at, forged=True) for _ in range(20)]
        results = await asyncio.gather(
            *(svc.webhook(self.name, h, b) for h, b in forged), return_exceptions=True
        )
        assert all(isinstance(r, WebhookRejected) for r in results), results
        # One fetch when the first delivery came (nothing cached), at most one more for rotation.
        assert self.requests(world, "fal.jwks") <= 2

    def delivery(
        self, job_id: str, *, at: datetime, forged: bool = False
    ) -> tuple[dict[str, str], bytes]:
        body = json.dumps(
            {"request_id": job_id, "gateway_request_id": job_id, "status": "OK", "payload": {}}
        ).encode()
        stamp = str(int(at.timestamp()))
        user = "contract-user"
        message = f"{job_id}\n{user}\n{stamp}\n{hashlib.sha256(body).hexdigest()}".encode()
        seed = bytes.fromhex(WRONG_SEED if forged else FAL_SEED)
        signature = Ed25519PrivateKey.from_private_bytes(seed).sign(message).hex()
        headers = {
            "X-Fal-Webhook-Request-Id": job_id,
            "X-Fal-Webhook-User-Id": user,
            "X-Fal-Webhook-Timestamp": stamp,
            "X-Fal-Webhook-Signature": signature,
        }
        return headers, body


class _Veo(Contract):
    """Veo: both ways in share the words; each says how it is reached."""

    name = "veo"
    create_route = "veo.create"
    moderation_code = "moderation_blocked"
    unknown_word = "paused"
    lists = False  # no list of operations: a lost create goes to a person
    cancels = False

    async def test_a_dropped_create_is_sent_once_never_again_by_the_sdk(
        self, svc: service.Service, world: World
    ) -> None:
        """The SDK's aiohttp path resends a request after a dropped connection; reelwatch
        hands it an httpx client, so the create goes out once and a person decides."""
        world.sim.sim.inject(self.create_route, "drop")
        g = await self.submit(svc, "[sim:queue=0,render=30] dropped")
        after = await self.settle(
            svc, world, g.id, until=lambda g: not g.submit_ambiguous or g.terminal
        )
        assert self.requests(world, self.create_route) == 1
        assert world.sim.sim.stats()["creates"] <= 1
        assert after.status is Status.FAILED and after.error is not None
        assert after.error.code == "create_unknown"

    async def test_an_error_operation_fails_with_the_rpc_code_name(
        self, svc: service.Service, world: World
    ) -> None:
        g = await self.submit(svc, "[sim:queue=0,render=2,fail=deadline_exceeded] slow")
        assert (await self.failure(svc, world, g.id)).code == "deadline_exceeded"

    async def test_rendering_words_come_from_history_not_a_percent(
        self, svc: service.Service, world: World
    ) -> None:
        g = await self.submit(svc, "[sim:queue=0,render=600] no percent")
        assert svc.view(g)["step"] == "Queued at Google"
        running = await self.settle(
            svc, world, g.id, until=lambda g: g.status is Status.IN_PROGRESS
        )
        assert running.progress == 0
        assert svc.view(running)["step"] == "Rendering (Google shows no progress)"


class TestVeoGemini(_Veo):
    poll_route = "veo.get"
    files_route = "veo.files"

    def provider_config(self, sim: simulator.RunningSimulator) -> dict[str, Any]:
        return {
            "api_key": TOKEN,
            "gemini_base_url": sim.veo_gemini_url,
            "webhook_secret": VEO_SECRET,
        }

    def job_name(self, model: str, job_id: str) -> str:
        return f"models/{model}/operations/{job_id}"

    def delivery(
        self, job_id: str, *, at: datetime, forged: bool = False
    ) -> tuple[dict[str, str], bytes]:
        name = f"models/veo-3.1-fast-generate-001/operations/{job_id}"
        body = {"type": "video.generated", "version": "v1", "data": {"id": name}}
        return _standard_delivery(VEO_SECRET, body, at, forged)

    async def test_a_parameter_only_vertex_takes_is_refused_before_anything_is_sent(
        self, svc: service.Service, world: World
    ) -> None:
        g = await svc.submit(
            service.SubmitRequest(
                "[sim:queue=0,render=2] x", provider=self.name, params={"seed": 7}
            )
        )
        done = await self.settle(svc, world, g.id)
        assert done.status is Status.FAILED and done.error is not None
        assert done.error.code == "invalid_params" and "seed" in done.error.message
        assert self.requests(world, self.create_route) == 0

    async def test_the_file_is_fetched_with_the_key_which_stays_on_the_api_host(
        self, svc: service.Service, world: World
    ) -> None:
        g = await self.submit(svc, "[sim:queue=0,render=3] a file")
        done = await self.settle(svc, world, g.id)
        assert done.status is Status.COMPLETED and done.remote["result"] == "file"
        assert done.expires_at is not None  # the Gemini API keeps files two days
        assert self.requests(world, "veo.files") == 1  # with the key: answered by a redirect
        assert self.requests(world, "veo.media") == 1  # the redirect followed
        assert self.requests(world, "veo.media_with_key") == 0

    async def test_a_per_request_webhook_is_a_jwt_the_published_keys_verify(
        self, world: World
    ) -> None:
        dynamic = {
            **self.provider_config(world.sim),
            "dynamic_webhooks": True,
            "jwks_url": world.sim.veo_jwks_url,
        }
        public = "http://127.0.0.1:9"
        hooked = world.with_settings(provider_config={self.name: dynamic}, public_url=public)
        async with assembly.open_service(hooked.settings, clock=world.clock) as svc:
            g = await self.submit(svc, "[sim:queue=0,render=600] told")
            sim = world.sim.sim
            found = sim.find(g.video_id or "", sim.clock.now(), dialect=sim_veo.GEMINI)
            assert found is not None
            job = found[0]
            assert job.extra["webhook_uris"] == [f"{public}/api/webhooks/veo"]
            now = world.clock.now().timestamp()

            def signed(bad: bool = False) -> tuple[dict[str, str], bytes]:
                # Signed by the simulator's own RS256 code, not PyJWT (which reelwatch uses).
                delivery = sim_veo.delivery(sim, job, "dynamic:0", now)
                assert delivery is not None
                _, headers = delivery.target(int(now), bad)  # type: ignore[misc]
                return headers, delivery.body

            assert await svc.webhook(self.name, *signed()) == "applied"
            with pytest.raises(WebhookRejected):
                await svc.webhook(self.name, *signed(bad=True))
            sim.rotate_veo_key()  # a key the verifier has not seen: fetched again, once
            with pytest.raises(WebhookRejected, match="kid"):  # not within 30 s of the last
                await svc.webhook(self.name, *signed())
            assert self.requests(world, "veo.jwks") == 1
            world.advance(31)
            now = world.clock.now().timestamp()
            assert await svc.webhook(self.name, *signed()) == "applied"
            assert self.requests(world, "veo.jwks") == 2


class TestVeoVertex(_Veo):
    poll_route = "veo.fetch"
    files_route = "veo.gcs"  # inline videos come with the operation; bucket ones from here

    def provider_config(self, sim: simulator.RunningSimulator) -> dict[str, Any]:
        return {
            "use_vertexai": True,
            "project": VEO_PROJECT,
            "location": "us-central1",
            "access_token": TOKEN,
            "vertex_base_url": sim.veo_vertex_url,
            "storage_url": sim.veo_storage_url,
        }

    def job_name(self, model: str, job_id: str) -> str:
        return (
            f"projects/{VEO_PROJECT}/locations/us-central1/publishers/google/models/"
            f"{model}/operations/{job_id}"
        )

    async def test_webhooks_signed_right_count_once_the_rest_are_refused(
        self, svc: service.Service, world: World
    ) -> None:
        """Vertex sends no HTTP webhooks (Pub/Sub only): none is taken."""
        assert self.name not in svc.verifiers
        with pytest.raises(exceptions.ConfigError, match="not set up"):
            await svc.webhook(self.name, {}, b"{}")

    async def test_a_copy_that_expired_before_it_was_fetched_fails_as_asset_expired(
        self, svc: service.Service, world: World
    ) -> None:
        """The bucket copy (with storage_uri): the inline one lives in the operation."""
        world.sim.sim.inject(self.files_route, "server_error", count=-1)
        g = await svc.submit(
            service.SubmitRequest(
                "[sim:queue=0,render=2] too late",
                provider=self.name,
                params={"storage_uri": "gs://reelwatch-test/out"},
            )
        )
        await self.settle(svc, world, g.id, until=lambda g: g.status is Status.DOWNLOADING)
        world.advance(self.keeps_assets_s + 60)
        world.sim.sim.reset_faults()
        assert (await self.failure(svc, world, g.id)).code == "asset_expired"

    async def test_polls_are_fetch_predict_operation_never_a_get(
        self, svc: service.Service, world: World
    ) -> None:
        g = await self.submit(svc, "[sim:queue=0,render=4] inline")
        done = await self.settle(svc, world, g.id)
        assert done.status is Status.COMPLETED
        assert done.remote["result"] == "inline"
        assert self.requests(world, "veo.fetch") >= 2  # the looks, and the read of the video
        assert self.requests(world, "veo.vertex_get") == 0

    async def test_a_bucket_result_is_read_with_the_token(
        self, svc: service.Service, world: World
    ) -> None:
        g = await svc.submit(
            service.SubmitRequest(
                "[sim:queue=0,render=3] to a bucket",
                provider=self.name,
                params={"storage_uri": "gs://reelwatch-test/out"},
            )
        )
        done = await self.settle(svc, world, g.id)
        assert done.status is Status.COMPLETED, done
        assert done.remote["gcs_uri"].startswith("gs://reelwatch-test/out/")
        video = done.assets[Variant.VIDEO]
        assert video.sha256 == world.sim.sim.expected_sha256(done.video_id or "")
        assert self.requests(world, "veo.gcs") == 1
