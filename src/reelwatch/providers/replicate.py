"""Replicate (predictions of any model: Veo, Kling, Hailuo, Seedance, Wan, Luma ...), through
the official `replicate` SDK (../shared/providers.md section 3).

Creates and cancels go through the SDK's methods. Reads go through the SDK's own HTTP client
(`Client._async_client`: its auth, base URL and user agent) but are parsed here, tolerantly,
because the SDK 1.0.7 model rejects the `aborted` status Replicate added in 2025-10
(replicate-python#449): a strict parse would turn a finished job into an endless error.

The SDK's transport retries GETs on 429/503/504 up to 10 times, sleeping up to a minute each;
the engine owns retries (a 429 must pause every worker of the endpoint, and a call must end
within the lease), so that transport is set to one attempt. There is no option for it, hence
the one reach into the SDK's client below.

What it offers, its configuration and its webhook verifier are in `replicate_catalogue`, which
imports no SDK; its `build` imports this module.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
import replicate.exceptions
from pydantic import v1 as pydantic_v1
from replicate.client import Client
from replicate.prediction import Prediction

from reelwatch import clock, exceptions
from reelwatch.models import ErrorInfo, RemoteStatus, RemoteVideo, Variant
from reelwatch.providers import base, output_urls, replicate_catalogue

DATA_KEPT = timedelta(hours=1)  # "all ... output files, and logs are removed after an hour"

_VERSION = re.compile(r"[0-9a-f]{64}")
_RESETS = re.compile(r"resets in ~?(\d+(?:\.\d+)?)\s*s")
MAX_LIST_PAGES = 10  # reconciliation looks back a few minutes; ten pages is far more


class Replicate:
    """A `Provider` for Replicate's predictions API."""

    catalogue = replicate_catalogue.CATALOGUE

    def __init__(
        self,
        *,
        api_token: str,
        base_url: str = replicate_catalogue.DEFAULT_BASE_URL,
        timeout_s: float = 20.0,
        clock: clock.Clock | None = None,
        webhook_url: str | None = None,
    ) -> None:
        self._clock = clock or _system
        self.endpoint = base.Endpoint(replicate_catalogue.NAME, base_url.rstrip("/"))
        self.webhooks_enabled = webhook_url is not None
        self._webhook_url = webhook_url
        timeout = httpx.Timeout(timeout_s, connect=min(5.0, timeout_s))
        self._sdk = Client(api_token=api_token, base_url=base_url, timeout=timeout)
        self._files = output_urls.Fetcher(timeout_s=timeout_s, trusted=base_url)
        self._http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        """The SDK's async HTTP client, its transport cut to one attempt (see the docstring)."""
        if self._http is None:
            http: httpx.AsyncClient = self._sdk._async_client
            transport = http._transport
            if hasattr(transport, "max_attempts"):
                transport.max_attempts = 1
            self._http = http
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        await self._files.aclose()

    async def create(self, request: base.CreateRequest) -> RemoteVideo:
        self._client()  # the one-attempt transport, before the SDK sends anything
        inputs: dict[str, Any] = {**request.params, "prompt": request.prompt}
        extra: dict[str, Any] = {}
        if self._webhook_url is not None:
            extra = {"webhook": self._webhook_url, "webhook_events_filter": ["completed"]}
        model, _, version = request.model.partition(":")
        try:
            if version:
                # `owner/name:version` as a whole: the API takes it, and it names the model.
                prediction = await self._sdk.predictions.async_create(
                    version=request.model, input=inputs, **extra
                )
            else:
                prediction = await self._sdk.models.predictions.async_create(
                    model=model, input=inputs, **extra
                )
        except replicate.exceptions.ReplicateError as exc:
            raise _error(exc.status or 0, exc.detail or str(exc), {}) from exc
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise base.unavailable(exc) from exc
        except pydantic_v1.ValidationError as exc:
            raise exceptions.ProviderUnavailable(f"unreadable prediction: {exc}") from exc
        return _remote(prediction.dict(), self._clock.now())

    async def retrieve(self, ref: base.Ref) -> RemoteVideo:
        data = await self._get_json(f"/v1/predictions/{_segment(ref.video_id)}")
        return _remote(data, self._clock.now())

    async def recent(self, *, since: datetime) -> AsyncIterator[RemoteVideo]:
        path: str | None = "/v1/predictions"
        for _ in range(MAX_LIST_PAGES):
            if path is None:
                return
            page = await self._get_json(path)
            for item in page.get("results") or []:
                if not isinstance(item, dict) or not item.get("id"):
                    continue
                video = _remote(item, self._clock.now())
                if video.created_at is not None and video.created_at < since:
                    return
                yield video
            following = page.get("next")
            path = following if isinstance(following, str) and self._ours(following) else None

    def _ours(self, url: str) -> bool:
        """A path, or a URL on the API's own origin: the token is never sent anywhere else."""
        if url.startswith("/") and not url.startswith("//"):
            return True
        return output_urls.origin(url) == output_urls.origin(self.endpoint.base_url)

    async def cancel(self, ref: base.Ref) -> None:
        self._client()
        try:
            await self._sdk.predictions.async_cancel(ref.video_id)
        except replicate.exceptions.ReplicateError as exc:
            raise _error(exc.status or 0, exc.detail or str(exc), {}) from exc
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise base.unavailable(exc) from exc
        except pydantic_v1.ValidationError:
            return  # answered with a prediction the SDK cannot read (aborted): it has ended

    @asynccontextmanager
    async def download(self, ref: base.Ref, variant: Variant) -> AsyncIterator[base.Download]:
        url = ref.remote.get("output_url")
        if variant is not Variant.VIDEO or not isinstance(url, str):
            raise exceptions.AssetGone(f"no {variant.value} among the outputs")
        async with self._files.open(url, self._clock.now()) as download:
            yield download

    async def _get_json(self, path: str) -> dict[str, Any]:
        try:
            response = await self._client().get(path)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise base.unavailable(exc) from exc
        if response.status_code >= 400:
            raise _error(response.status_code, _detail(response), response.headers)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise exceptions.ProviderUnavailable(f"unreadable answer: {response.text[:200]!r}")
        return data


_system = clock.SystemClock()


def _segment(job_id: str) -> str:
    """A prediction id as one path segment (ids are opaque; nothing may steer the path)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,100}", job_id):
        raise exceptions.ProviderNotFound(f"{job_id[:40]!r} cannot be a prediction id")
    return job_id


def _detail(response: httpx.Response) -> str:
    """The `detail` of an RFC 7807 error body, or the start of the text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or f"HTTP {response.status_code}")
    return f"HTTP {response.status_code}"


def _error(status: int, detail: str, headers: Mapping[str, str]) -> exceptions.ProviderError:
    if status == 404:
        return exceptions.ProviderNotFound(detail)
    if status == 429:
        wait = base.retry_after_s(dict(headers), _system.now())
        if wait is None and (resets := _RESETS.search(detail)):
            wait = float(resets.group(1))  # "Your rate limit resets in ~30s."
        return exceptions.ProviderRateLimited(detail, retry_after_s=wait)
    if status >= 500 or status in (0, 408, 409):
        return exceptions.ProviderUnavailable(f"HTTP {status}: {detail}")
    return exceptions.ProviderRejected(detail, error_code=f"http_{status}", http_status=status)


def _remote(data: Mapping[str, Any], now: datetime) -> RemoteVideo:
    """A prediction (as JSON) in neutral terms; tolerant of words and fields the SDK lacks."""
    raw = str(data.get("status") or "")
    status = base.status_of(replicate_catalogue.STATUSES, raw)
    raw_logs = data.get("logs")
    logs = raw_logs if isinstance(raw_logs, str) else ""
    progress = Prediction.Progress.parse(logs) if logs else None
    percent = round(progress.percentage * 100) if progress is not None else 0
    completed_at = _time(data.get("completed_at"))
    output = _output_url(data.get("output"))
    raw_inputs = data.get("input")
    inputs: Mapping[str, Any] = raw_inputs if isinstance(raw_inputs, dict) else {}
    error = None
    if status is RemoteStatus.FAILED:
        error = _failure(raw, data.get("error"))
    remote: dict[str, Any] = {}
    expires_at = None
    if status is RemoteStatus.COMPLETED:
        remote["output_url"] = output
        ended = completed_at or now
        expires_at = ended + DATA_KEPT
        if data.get("data_removed") or output is None:
            expires_at = min(expires_at, now)  # nothing left to fetch
    return RemoteVideo(
        video_id=str(data["id"]),
        status=status,
        raw_status=raw,
        progress=min(99, percent) if status is RemoteStatus.IN_PROGRESS else percent,
        error=error,
        created_at=_time(data.get("created_at")),
        completed_at=completed_at,
        expires_at=expires_at,
        model=_model(data),
        prompt=str(inputs["prompt"]) if "prompt" in inputs else None,
        params={k: v for k, v in inputs.items() if k != "prompt"},
        remote=remote,
        detail=_last_line(logs) if progress is None else None,
    )


def _failure(raw: str, error: object) -> ErrorInfo:
    if raw == "canceled":
        return ErrorInfo("cancelled", "The prediction was cancelled")
    if raw == "aborted":
        return ErrorInfo("deadline", "The prediction's deadline passed before it started")
    message = str(error) if error else "The prediction failed"
    lowered = message.lower()
    if "nsfw" in lowered or "safety" in lowered or "sensitive" in lowered:
        return ErrorInfo("moderation", message)
    return ErrorInfo("failed", message)


def _output_url(output: object) -> str | None:
    """The video among a model's outputs: a URL, a list of them, or an object with one."""
    if isinstance(output, str) and output.startswith(("https://", "http://")):
        return output
    if isinstance(output, list):
        for item in output:
            if (found := _output_url(item)) is not None:
                return found
    if isinstance(output, dict):
        for key in ("video", "url", "output"):
            if (found := _output_url(output.get(key))) is not None:
                return found
    return None


def _model(data: Mapping[str, Any]) -> str | None:
    model = data.get("model")
    version = data.get("version")
    if isinstance(model, str) and model:
        return model
    if isinstance(version, str) and _VERSION.fullmatch(version):
        return version
    return None


def _last_line(logs: str) -> str | None:
    lines = [line.strip() for line in logs.splitlines() if line.strip()]
    return lines[-1][:200] if lines else None


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
