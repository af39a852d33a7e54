"""Google Veo on Vertex AI and on the Gemini API, through the official `google-genai` SDK
(../shared/providers.md section 1).

Both are long-running operations with no progress: a create answers an operation name, a look
answers `done` (or not), then the video, a safety verdict or an rpc error.

- Vertex AI: created and polled through the SDK (`models.generate_videos`,
  `operations.get`, which POSTs `:fetchPredictOperation`; a GET of the operation is a 404
  there). The video comes inline (base64 in the operation) or, with `storage_uri`, in the
  user's bucket, read through the Cloud Storage JSON API with the same token.
- Gemini API: polled through the SDK, but created with one plain REST POST beside it, because
  SDK 3.x refuses Veo creates in Gemini API mode (docs/architecture.md says why this way). The
  file is fetched from the Files API with the key, which never leaves the API's host.

The SDK is handed reelwatch's own httpx client: with aiohttp installed its default async path
silently sends a request again (a create too) after a dropped connection; on httpx it makes
exactly one attempt (no `retry_options`), and the engine decides what happens next.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pydantic
from google import genai
from google.genai import errors, types

from reelwatch import clock, exceptions
from reelwatch.models import ErrorInfo, RemoteStatus, RemoteVideo, Variant
from reelwatch.providers import base, output_urls, veo_catalogue

GEMINI_VERSION = "v1beta"  # the documented Veo paths; SDK 3.x defaults to v1
FILE_LIFETIME = timedelta(days=2)  # the Gemini API keeps generated files two days
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
MAX_INLINE_BYTES = 256 << 20  # an inline video is held in memory once; bigger: use a bucket
CHUNK = 1 << 20
_FILE_ID = re.compile(r"files/([a-z0-9]{1,100})")
# google.rpc.Code, for an operation that ended with an error.
RPC_CODES: Mapping[int, str] = {
    1: "cancelled",
    2: "unknown",
    3: "invalid_argument",
    4: "deadline_exceeded",
    5: "not_found",
    7: "permission_denied",
    8: "resource_exhausted",
    9: "failed_precondition",
    10: "aborted",
    13: "internal",
    14: "unavailable",
    16: "unauthenticated",
}
NO_VIDEO = "Google returned no video (its safety filters, most likely)"
# The SDK's GenerateVideosConfig names -> the Gemini API's wire names (the SDK's last Gemini
# converter, google-genai 2.25.0 `_GenerateVideosConfig_to_mldev`).
GEMINI_WIRE = {
    "aspect_ratio": "aspectRatio",
    "duration_seconds": "durationSeconds",
    "resolution": "resolution",
    "person_generation": "personGeneration",
    "negative_prompt": "negativePrompt",
    "enhance_prompt": "enhancePrompt",
}


class _Bytes:
    """A download of bytes already in memory (Vertex's inline video)."""

    content_type: str
    content_length: int | None

    def __init__(self, data: bytes, content_type: str) -> None:
        self._data = data
        self.content_type = content_type
        self.content_length = len(data)

    async def chunks(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self._data), CHUNK):
            yield self._data[start : start + CHUNK]


class Veo:
    """A `Provider` for Veo, on Vertex AI or the Gemini API (`Config.use_vertexai`)."""

    catalogue = veo_catalogue.CATALOGUE

    def __init__(
        self,
        config: veo_catalogue.Config,
        *,
        timeout_s: float = 20.0,
        clock: clock.Clock | None = None,
        webhook_url: str | None = None,
    ) -> None:
        self._config = config
        self._vertex = config.use_vertexai
        self._clock = clock or _system
        self.endpoint = base.Endpoint(veo_catalogue.NAME, config.base_url)
        self._webhook_url = webhook_url if not self._vertex else None
        # Deliveries come: a registered webhook's secret, or a URL sent with each create
        # (per-request webhooks need REELWATCH_PUBLIC_URL; without it they are off).
        self.webhooks_enabled = not self._vertex and (
            config.webhook_secret is not None or self._webhook_url is not None
        )
        self._timeout_s = timeout_s
        timeout = httpx.Timeout(timeout_s, connect=min(5.0, timeout_s))
        # Redirects are followed by hand (the key must not follow them off the API's host).
        self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._files = output_urls.Fetcher(timeout_s=timeout_s, trusted=config.gemini_base_url)
        self._sdk: genai.Client | None = None
        self._credentials: Any = None
        self._lock = asyncio.Lock()

    # --- the SDK and credentials ----------------------------------------------------------------

    async def _client(self) -> genai.Client:
        """The SDK's client, made on first use (Vertex's default credentials may read files
        or a metadata server: not in the constructor, not on the event loop)."""
        async with self._lock:
            if self._sdk is None:
                self._sdk = await self._make_client()
            return self._sdk

    async def _make_client(self) -> genai.Client:
        config = self._config
        options = types.HttpOptions(
            timeout=int(self._timeout_s * 1000), httpx_async_client=self._http
        )
        if not self._vertex:
            options.base_url = config.gemini_base_url
            options.api_version = GEMINI_VERSION
            return genai.Client(vertexai=False, api_key=config.api_key, http_options=options)
        options.base_url = config.vertex_root
        if config.express:
            return genai.Client(vertexai=True, api_key=config.api_key, http_options=options)
        self._credentials = await self._load_credentials()
        return genai.Client(
            vertexai=True,
            project=config.project,
            location=config.region,
            credentials=self._credentials,
            http_options=options,
        )

    async def _load_credentials(self) -> Any:
        if self._config.access_token is not None:
            from google.oauth2.credentials import Credentials

            # A token with no expiry: the SDK never tries to refresh it.
            return Credentials(token=self._config.access_token)  # type: ignore[no-untyped-call]
        import google.auth

        try:
            found, _ = await asyncio.to_thread(google.auth.default, scopes=[CLOUD_PLATFORM])
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise exceptions.ConfigError(
                "Vertex AI needs credentials: run `gcloud auth application-default login`, "
                "set GOOGLE_APPLICATION_CREDENTIALS, or REELWATCH_VEO_ACCESS_TOKEN"
            ) from exc
        return found

    async def _token(self) -> str:
        """An OAuth token for Cloud Storage: the credentials the SDK uses, refreshed if due."""
        await self._client()
        credentials = self._credentials
        if credentials is None:
            raise exceptions.ProviderRejected(
                "reading a gs:// result needs OAuth credentials, not an API key",
                error_code="gcs_needs_oauth",
                http_status=None,
            )
        if not credentials.valid:
            from google.auth.transport.requests import Request

            await asyncio.to_thread(credentials.refresh, Request())
        return str(credentials.token)

    async def aclose(self) -> None:
        if self._sdk is not None:
            await self._sdk.aio.aclose()  # leaves our httpx client open: closed next
        await self._http.aclose()
        await self._files.aclose()

    # --- create ---------------------------------------------------------------------------------

    async def create(self, request: base.CreateRequest) -> RemoteVideo:
        params = dict(request.params)
        if self._vertex:
            name = await self._create_on_vertex(request, params)
        else:
            refused = [p for p in veo_catalogue.VERTEX_ONLY if p in params]
            if refused:
                raise exceptions.ProviderRejected(
                    f"{refused[0]} is not supported in the Gemini API (Vertex AI only)",
                    error_code="invalid_params",
                    http_status=None,
                )
            name = await self._create_on_gemini(request, params)
        video_id = name.rpartition("/operations/")[2]
        if not veo_catalogue.OPERATION_ID.fullmatch(video_id):
            raise exceptions.ProviderUnavailable(f"no operation name in the answer: {name!r:.200}")
        return RemoteVideo(
            video_id=video_id,
            status=RemoteStatus.QUEUED,
            raw_status="submitted",
            progress=0,
            model=request.model,
            prompt=request.prompt,
            params=params,
            remote={"operation": name},
        )

    async def _create_on_vertex(self, request: base.CreateRequest, params: dict[str, Any]) -> str:
        client = await self._client()
        image = None
        if request.input_reference is not None:
            upload = request.input_reference
            image = types.Image(image_bytes=upload.data, mime_type=upload.content_type)
        config = types.GenerateVideosConfig(
            number_of_videos=1,
            duration_seconds=params.get("duration_seconds"),
            aspect_ratio=params.get("aspect_ratio"),
            resolution=params.get("resolution"),
            person_generation=params.get("person_generation"),
            negative_prompt=params.get("negative_prompt"),
            enhance_prompt=params.get("enhance_prompt"),
            generate_audio=params.get("generate_audio"),
            seed=params.get("seed"),
            output_gcs_uri=params.get("storage_uri"),
            compression_quality=_upper(params.get("compression_quality")),
            resize_mode=_upper(params.get("resize_mode")),
        )
        source = types.GenerateVideosSource(prompt=request.prompt, image=image)
        try:
            operation = await client.aio.models.generate_videos(
                model=request.model, source=source, config=config
            )
        except Exception as exc:
            mapped = self._error(exc, sent=True)
            if mapped is exc:
                raise
            raise mapped from exc
        if not operation.name:
            raise exceptions.ProviderUnavailable("the create answered no operation name")
        return operation.name

    async def _create_on_gemini(self, request: base.CreateRequest, params: dict[str, Any]) -> str:
        """One REST POST, in the wire shape of the SDK's own last Gemini API converter."""
        instance: dict[str, Any] = {"prompt": request.prompt}
        if request.input_reference is not None:
            upload = request.input_reference
            instance["image"] = {
                "bytesBase64Encoded": base64.b64encode(upload.data).decode(),
                "mimeType": upload.content_type,
            }
        parameters: dict[str, Any] = {"sampleCount": 1}
        for name, wire in GEMINI_WIRE.items():
            if name in params:
                parameters[wire] = params[name]
        body: dict[str, Any] = {"instances": [instance], "parameters": parameters}
        if self._webhook_url is not None:
            body["webhookConfig"] = {
                "uris": [self._webhook_url],
                "userMetadata": {"source": "reelwatch"},
            }
        url = f"{self._config.gemini_base_url}{GEMINI_VERSION}/models/{request.model}"
        try:
            response = await self._http.post(
                url + ":predictLongRunning", json=body, headers=self._key_header()
            )
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise base.unavailable(exc) from exc
        data = _json(response)
        if response.status_code >= 400:
            raise _status_error(response.status_code, data, response.headers, self._clock.now())
        operation = data.get("name") if isinstance(data, dict) else None
        if not isinstance(operation, str):
            raise exceptions.ProviderUnavailable(f"unreadable answer: {response.text[:200]!r}")
        return operation

    def _key_header(self) -> dict[str, str]:
        return {"x-goog-api-key": self._config.api_key or ""}

    # --- look -----------------------------------------------------------------------------------

    async def retrieve(self, ref: base.Ref) -> RemoteVideo:
        try:
            operation = await self._operation(ref)
        except pydantic.ValidationError as exc:
            # An operation the SDK cannot read (`done` that is no boolean): a person decides.
            word = _unreadable(exc)
            return _video(ref, RemoteStatus.UNKNOWN, word, detail=f"Google answered {word!r}")
        if not operation.done:
            return _video(ref, RemoteStatus.IN_PROGRESS, "running")
        if operation.error:
            error = _rpc_error(operation.error)
            return _video(ref, RemoteStatus.FAILED, "error", error=error)
        response = operation.response
        samples = (response.generated_videos if response else None) or []
        video = samples[0].video if samples else None
        if video is None or not (video.uri or video.video_bytes):
            reasons = (response.rai_media_filtered_reasons if response else None) or []
            error = ErrorInfo("moderation_blocked", "; ".join(reasons)[:1000] or NO_VIDEO)
            return _video(ref, RemoteStatus.FAILED, "filtered", error=error)
        now = self._clock.now()
        remote: dict[str, Any] = {**ref.remote, "mime_type": video.mime_type or "video/mp4"}
        expires = None
        if video.uri and video.uri.startswith("gs://"):
            remote |= {"result": "gcs", "gcs_uri": video.uri}
        elif video.uri:
            match = _FILE_ID.search(video.uri)
            if match is None:
                error = ErrorInfo("no_output", f"unreadable file URI {video.uri[:100]!r}")
                return _video(ref, RemoteStatus.FAILED, "done", error=error)
            remote |= {"result": "file", "file": match.group(1)}
            expires = now + FILE_LIFETIME
        else:
            remote |= {"result": "inline"}
        return RemoteVideo(
            video_id=ref.video_id,
            status=RemoteStatus.COMPLETED,
            raw_status="done",
            progress=100,
            completed_at=now,
            expires_at=expires,
            remote=remote,
        )

    async def _operation(self, ref: base.Ref) -> types.GenerateVideosOperation:
        name = ref.remote.get("operation")
        if not isinstance(name, str):
            raise exceptions.ProviderNotFound("this generation has no operation name")
        vertex_name = name.startswith("projects/")
        if vertex_name != self._vertex:
            raise exceptions.ProviderNotFound("the operation belongs to the other way in to Veo")
        client = await self._client()
        try:
            # The documented way to look at an operation made by an earlier process.
            handle = types.GenerateVideosOperation.model_validate({"name": name})
            return await client.aio.operations.get(handle)
        except pydantic.ValidationError:
            raise
        except Exception as exc:
            mapped = self._error(exc, sent=False)
            if mapped is exc:
                raise
            raise mapped from exc

    def recent(self, *, since: datetime) -> AsyncIterator[RemoteVideo]:
        raise exceptions.NotAllowed("Veo has no list of operations")

    async def cancel(self, ref: base.Ref) -> None:
        raise exceptions.NotAllowed("Veo operations cannot be cancelled")

    # --- download -------------------------------------------------------------------------------

    @asynccontextmanager
    async def download(self, ref: base.Ref, variant: Variant) -> AsyncIterator[base.Download]:
        if variant is not Variant.VIDEO:
            raise exceptions.AssetGone(f"Veo makes no {variant.value}")
        match ref.remote.get("result"):
            case "file":
                async with self._gemini_file(str(ref.remote.get("file"))) as download:
                    yield download
            case "gcs":
                async with self._gcs_object(str(ref.remote.get("gcs_uri"))) as download:
                    yield download
            case "inline":
                yield await self._inline(ref)
            case _:
                raise exceptions.AssetGone("the operation named no video")

    @asynccontextmanager
    async def _gemini_file(self, file_id: str) -> AsyncIterator[base.Download]:
        """`GET {base}v1beta/files/{id}:download?alt=media` with the key (the URL the SDK's
        `files.download` builds; it reads the whole file into memory, so not through it)."""
        url = f"{self._config.gemini_base_url}{GEMINI_VERSION}/files/{quote(file_id)}:download"
        response = await self._send("GET", url, headers=self._key_header(), alt="media")
        try:
            if response.is_redirect and "location" in response.headers:
                location = str(response.url.join(response.headers["location"]))
                await response.aclose()
                # The file's own host: fetched without the key, each hop checked.
                async with self._files.open(location, self._clock.now()) as download:
                    yield download
                return
            await self._check_download(response, "Google keeps generated files for 2 days")
            yield output_urls.ResponseDownload(response)
        finally:
            await response.aclose()

    @asynccontextmanager
    async def _gcs_object(self, uri: str) -> AsyncIterator[base.Download]:
        """A `gs://bucket/object` through the Cloud Storage JSON API, with the OAuth token."""
        bucket, _, name = uri.removeprefix("gs://").partition("/")
        url = f"{self._config.storage_url}/storage/v1/b/{quote(bucket)}/o/{quote(name, safe='')}"
        headers = {"authorization": f"Bearer {await self._token()}"}
        response = await self._send("GET", url, headers=headers, alt="media")
        try:
            await self._check_download(response, "the object is gone from the bucket")
            yield output_urls.ResponseDownload(response)
        finally:
            await response.aclose()

    async def _inline(self, ref: base.Ref) -> base.Download:
        """Vertex's inline video: the operation read again (it is not kept between steps)."""
        try:
            operation = await self._operation(ref)
        except exceptions.ProviderNotFound as exc:
            raise exceptions.AssetGone("Google no longer keeps this operation") from exc
        samples = (operation.response.generated_videos if operation.response else None) or []
        video = samples[0].video if samples else None
        if video is None or not video.video_bytes:
            raise exceptions.AssetGone("the operation no longer holds the video")
        if len(video.video_bytes) > MAX_INLINE_BYTES:
            raise exceptions.ProviderRejected(
                "too large to take inline; set storage_uri=gs://...",
                error_code="inline_too_large",
                http_status=None,
            )
        return _Bytes(video.video_bytes, video.mime_type or "video/mp4")

    async def _send(
        self, method: str, url: str, *, headers: Mapping[str, str], alt: str
    ) -> httpx.Response:
        request = self._http.build_request(method, url, headers=headers, params={"alt": alt})
        try:
            return await self._http.send(request, stream=True)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise exceptions.ProviderUnavailable(f"download failed: {type(exc).__name__}") from exc

    async def _check_download(self, response: httpx.Response, gone: str) -> None:
        status = response.status_code
        if status < 400:
            return
        if status in output_urls.GONE:
            raise exceptions.AssetGone(f"HTTP {status}: {gone}")
        await response.aread()
        raise _status_error(status, _json(response), response.headers, self._clock.now())

    # --- errors ---------------------------------------------------------------------------------

    def _error(self, exc: Exception, *, sent: bool) -> Exception:
        """The SDK's or httpx's failure as reelwatch's: `sent` when the request may have been
        acted on (a create that broke after sending is ambiguous, never safely repeated)."""
        if isinstance(exc, errors.APIError):
            headers = exc.response.headers if exc.response is not None else {}
            return _status_error(exc.code, exc.details, headers, self._clock.now())
        if isinstance(exc, httpx.TimeoutException | httpx.TransportError):
            return base.unavailable(exc)
        if isinstance(exc, ValueError | pydantic.ValidationError) and sent:
            return exceptions.ProviderUnavailable(f"unreadable answer: {exc}"[:300])
        return exc


_system = clock.SystemClock()


def _video(
    ref: base.Ref,
    status: RemoteStatus,
    raw: str,
    *,
    error: ErrorInfo | None = None,
    detail: str | None = None,
) -> RemoteVideo:
    return RemoteVideo(
        video_id=ref.video_id,
        status=status,
        raw_status=raw,
        progress=0,
        error=error,
        remote=dict(ref.remote),
        detail=detail,
    )


def _upper(value: object) -> str | None:
    return value.upper() if isinstance(value, str) else None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _unreadable(exc: pydantic.ValidationError) -> str:
    """What the SDK could not read, for a person: the offending value, shortened."""
    errors_ = exc.errors()
    value = errors_[0].get("input") if errors_ else None
    return str(value)[:40] if value is not None else "unreadable"


def _rpc_error(error: Mapping[str, Any]) -> ErrorInfo:
    """A `google.rpc.Status` (`{"code", "message"}`) as a code and a message."""
    code = error.get("code")
    name = RPC_CODES.get(code, f"google_{code}") if isinstance(code, int) else "failed"
    message = str(error.get("message") or f"The operation failed ({name})")
    return ErrorInfo(name, message[:1000])


def retry_delay_s(details: object) -> float | None:
    """`google.rpc.RetryInfo.retryDelay` ("30s", "1.5s") from an error body, if present."""
    error = details.get("error") if isinstance(details, dict) else None
    items = error.get("details") if isinstance(error, dict) else None
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not str(item.get("@type", "")).endswith("RetryInfo"):
            continue
        delay = item.get("retryDelay")
        if isinstance(delay, str) and (match := re.fullmatch(r"(\d{1,6}(?:\.\d+)?)s", delay)):
            return float(match.group(1))
    return None


def _status_error(
    status: int, data: object, headers: Mapping[str, str], now: datetime
) -> exceptions.ProviderError:
    """Google's error envelope `{"error": {"code", "message", "status", "details"}}`."""
    error = data.get("error") if isinstance(data, dict) else None
    message = str(error.get("message") or "") if isinstance(error, dict) else ""
    word = str(error.get("status") or "") if isinstance(error, dict) else ""
    message = message or f"HTTP {status}"
    if status == 404:
        return exceptions.ProviderNotFound(message)
    if status == 429:
        wait = retry_delay_s(data)
        if wait is None:
            wait = base.retry_after_s(dict(headers), now)
        return exceptions.ProviderRateLimited(message, retry_after_s=wait)
    if status >= 500 or status == 408:
        return exceptions.ProviderUnavailable(f"HTTP {status}: {message}")
    code = word.lower() if word else f"http_{status}"
    return exceptions.ProviderRejected(message, error_code=code, http_status=status)
