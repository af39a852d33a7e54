"""Simulated video APIs for the demo, the test suite and benchmarks.

One process fakes the OpenAI Videos API (`{origin}/v1`), Replicate (`{origin}/replicate`, see
`replicate.py`), the fal queue (`{origin}/fal/`, see `fal.py`) and Google Veo on the Gemini API
(`{origin}/gemini/`) and on Vertex AI (`{origin}/vertex/`, results in Cloud Storage under
`{origin}/gcs`; see `veo.py`) on one core. Start one in-process with `running()` (tests;
`RunningSimulator.base_url`, `.replicate_base_url`, `.fal_queue_url`, `.fal_jwks_url`,
`.veo_gemini_url`, `.veo_vertex_url`, `.veo_jwks_url`, `.veo_storage_url`), or blocking with
`serve()` (the CLI). Jobs follow a seeded or prompt-scripted timeline on a clock tests can
advance; faults can be injected per route; endings are announced by signed webhooks (Standard
Webhooks for OpenAI, Replicate and static Gemini webhooks, Ed25519 for fal, RS256 JWTs for
dynamic Gemini webhooks; Vertex sends none).

Prompt directives, anywhere in the prompt (the prompt is echoed unchanged):
    [sim:queue=0,render=5]        exact queue and render durations in seconds
    [sim:fail=moderation_blocked] end `failed` with this error code when rendering ends
    [sim:stuck] / [sim:stuck=80]  stay in_progress forever, progress frozen (default 50)
    [sim:bytes=1048576]           size of the video variant
    [sim:unknown_status=processing]  report this raw status while rendering
    [sim:vanish_after=30]         404 for everything about the job after 30 s
    [sim:progress=lumps]          progress profile: linear, lumps, easeout, stall or none
An unknown key or a malformed value is a 400 on `prompt`. Veo reports no progress (`progress` is
ignored there); `fail=moderation_blocked` (or `content_policy_violation`) is a done operation
without videos and with `raiMediaFilteredReasons`, any other code an rpc `error`;
`unknown_status=W` answers `"done": "W"`.

Faults (`Simulator.inject(route, kind, count=1, video_id=None, **params)`, or POST /_sim/faults):
routes create, retrieve, list, content, delete, remix; replicate.create, replicate.get,
replicate.list, replicate.cancel, replicate.files; fal.submit, fal.status, fal.result, fal.cancel,
fal.files; veo.create, veo.get (Gemini poll), veo.fetch (Vertex fetchPredictOperation; the job id
is read from the body), veo.vertex_get (always 404), veo.files, veo.media, veo.gcs, veo.webhooks;
or "*". Kinds rate_limit (retry_after, retry_after_ms), server_error (status, should_retry),
error (status: any other 4xx/5xx), latency (seconds), truncate, create_then_fail (create routes
only), drop; each dialect answers in its own shape (Veo: Google's envelope, 429
RESOURCE_EXHAUSTED with RetryInfo). count=-1 lasts until `reset_faults()`.

Controls over HTTP, without auth: GET /_sim/health, GET /_sim/stats, POST /_sim/faults,
POST /_sim/reset-faults, POST /_sim/clock/advance {"seconds"}, POST /_sim/shutdown {"enabled"},
POST /_sim/webhooks/tamper {"duplicate", "timestamp_offset_s", "bad_signature", "dialect"},
POST /_sim/fal/rotate-key, POST /_sim/veo/rotate-key, GET /_sim/replicate/webhook-secret,
POST /_sim/reset {SimConfig...}.
"""

from reelwatch.simulator.config import SimClock, SimConfig
from reelwatch.simulator.content import expected_sha256
from reelwatch.simulator.server import RunningSimulator, create_app, running, serve
from reelwatch.simulator.state import Simulator

__all__ = [
    "RunningSimulator",
    "SimClock",
    "SimConfig",
    "Simulator",
    "create_app",
    "expected_sha256",
    "running",
    "serve",
]
