"""The generations API: create or track, look, list, history, reset, retry, cancel, content."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from reelwatch import presenter, service
from reelwatch.models import Asset, Status, Variant
from reelwatch.web import access
from reelwatch.web.errors import ApiError

router = APIRouter(prefix="/api", dependencies=[Depends(access.require_user)])

MAX_UPLOAD_BYTES = service.MAX_REFERENCE_BYTES
UPLOAD_SUFFIX = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp"}


class CreateBody(BaseModel):
    """Submit a new generation, or track one created elsewhere with `video_id`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    # No max_length here: the service checks it, with the same words as the CLI (the body
    # itself is capped at 25 MiB).
    prompt: str | None = None
    provider: str | None = Field(None, max_length=40, description="default: REELWATCH_PROVIDER")
    model: str | None = Field(None, max_length=100, description="default: the provider's")
    params: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="the provider's own inputs (see GET /api/providers)"
    )
    seconds: int | None = Field(None, description="shorthand for params.seconds")
    size: str | None = Field(None, max_length=20, description="shorthand for params.size")
    video_id: str | None = Field(None, max_length=200)

    def merged_params(self) -> dict[str, Any]:
        extra = {"seconds": self.seconds, "size": self.size}
        return {**self.params, **{k: v for k, v in extra.items() if v is not None}}


class ActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    confirm: bool = False


class Page(BaseModel):
    data: list[dict[str, Any]]
    next_cursor: str | None
    prev_cursor: str | None = None


def svc(request: Request) -> service.Service:
    result: service.Service = request.app.state.service
    return result


def actor(request: Request) -> str:
    client = request.client.host if request.client else "unknown"
    return f"api:{client}"


Svc = Annotated[service.Service, Depends(svc)]

CREATE_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": CreateBody.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "prompt": {"type": "string"},
                        "model": {"type": "string"},
                        "seconds": {"type": "integer"},
                        "size": {"type": "string"},
                        "input_reference": {"type": "string", "format": "binary"},
                    },
                    "required": ["prompt"],
                }
            },
        },
    }
}


@router.post("/generations", status_code=201, openapi_extra=CREATE_SCHEMA)
async def create(request: Request, svc: Svc) -> dict[str, Any]:
    """Submit a generation (JSON, or multipart with an `input_reference` image) or track one."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        return await _create_multipart(request, svc)
    if not content_type.startswith("application/json"):
        raise ApiError(
            415, "unsupported_media_type", "send application/json or multipart/form-data"
        )
    parsed = await _create_body(request)
    if parsed.video_id is not None:
        if parsed.prompt is not None:
            raise ApiError(422, "invalid_request", "video_id: give either video_id or prompt")
        g = await svc.track(parsed.video_id, provider=parsed.provider, actor=actor(request))
    else:
        request_ = service.SubmitRequest(
            parsed.prompt or "", parsed.provider, parsed.model, parsed.merged_params()
        )
        g = await svc.submit(request_, actor=actor(request))
    return svc.view(g)


async def _create_body(request: Request) -> CreateBody:
    try:
        return CreateBody.model_validate_json(await request.body())
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError(422, "invalid_request", f"{field}: {first['msg']}") from None


@router.post("/estimate")
async def estimate(request: Request, svc: Svc) -> dict[str, Any]:
    """What a create with this body would send and cost, checked as a create checks it but
    neither stored nor sent (the dashboard's "New generation" form shows it as you type)."""
    parsed = await _create_body(request)
    quote = svc.quote(
        service.SubmitRequest(
            parsed.prompt or "", parsed.provider, parsed.model, parsed.merged_params()
        )
    )
    return {
        "provider": quote.provider,
        "model": quote.model,
        "params": dict(quote.inputs.params),
        "estimated_cost_usd": quote.cost_usd,
        "configured": quote.provider in svc.engines,
    }


async def _create_multipart(request: Request, svc: Svc) -> dict[str, Any]:
    async with request.form(max_files=1, max_fields=10) as form:
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        known = {"prompt", "provider", "model", "seconds", "size", "input_reference"}
        unknown = set(form.keys()) - known
        if unknown:
            raise ApiError(422, "invalid_request", f"{sorted(unknown)[0]}: unknown field")
        seconds_raw = fields.get("seconds", "0")
        # ASCII digits, a few of them: str.isdigit() also accepts "²" (int() refuses it) and
        # int() refuses more than 4,300 digits; no video is longer than 9,999 s anyway.
        if not (seconds_raw.isascii() and seconds_raw.isdigit() and len(seconds_raw) <= 4):
            raise ApiError(422, "invalid_request", "seconds: must be a whole number of seconds")
        with tempfile.TemporaryDirectory(prefix="reelwatch-upload-") as folder:
            reference = await saved_upload(form.get("input_reference"), Path(folder), 422)
            params: dict[str, Any] = {"seconds": int(seconds_raw)} if "seconds" in fields else {}
            if "size" in fields:
                params["size"] = fields["size"]
            submit = service.SubmitRequest(
                fields.get("prompt", ""),
                fields.get("provider") or None,
                fields.get("model") or None,
                params,
                reference,
            )
            g = await svc.submit(submit, actor=actor(request))
    return svc.view(g)


async def saved_upload(upload: object, folder: Path, refusal: int) -> Path | None:
    """A multipart `input_reference` image written to `folder` (checked: JPEG, PNG or WebP,
    at most 20 MiB, else `refusal`/413); None when none was sent."""
    if not isinstance(upload, UploadFile):
        return None
    suffix = UPLOAD_SUFFIX.get(upload.content_type or "")
    if suffix is None:
        raise ApiError(
            refusal,
            "invalid_request" if refusal == 422 else "invalid_value",
            "input_reference: must be a JPEG, PNG or WebP image",
            param="input_reference",
        )
    if upload.size is not None and upload.size > MAX_UPLOAD_BYTES:
        raise ApiError(413, "too_large", "input_reference: larger than 20 MiB")
    reference = folder / f"reference{suffix}"
    with reference.open("wb") as handle:
        while block := await upload.read(256 * 1024):
            handle.write(block)
    return reference


@router.get("/generations")
async def list_generations(
    svc: Svc,
    status: Annotated[list[Status] | None, Query()] = None,
    model: Annotated[str | None, Query(max_length=100)] = None,
    provider: Annotated[str | None, Query(max_length=40)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    before: Annotated[str | None, Query(max_length=500)] = None,
    order: Annotated[Literal["newest", "oldest", "changed"], Query()] = "newest",
) -> Page:
    """Newest first (or `order=oldest`, or `changed`: the most recently changed first); filter
    by status (repeatable), provider, model and text (the prompt, or exactly our id or the
    provider's); `cursor` continues with the next page, `before` goes back (`prev_cursor`)."""
    page = await svc.page(
        statuses=status or (),
        model=model,
        provider=provider,
        text=q,
        limit=limit,
        cursor=cursor,
        before=before,
        order=order,
    )
    return Page(
        data=[svc.view(g) for g in page.items],
        next_cursor=page.next_cursor,
        prev_cursor=page.prev_cursor,
    )


@router.get("/providers")
async def list_providers(svc: Svc) -> dict[str, Any]:
    """Every provider reelwatch has an adapter for: configured here or not, its models and
    what it can do."""
    return {"data": svc.describe_providers()}


@router.get("/generations/{generation_id}")
async def get_generation(generation_id: str, svc: Svc) -> dict[str, Any]:
    return svc.view(await svc.get(generation_id))


@router.get("/generations/{generation_id}/events")
async def generation_events(generation_id: str, svc: Svc) -> dict[str, Any]:
    """The generation's audit log, oldest first."""
    return {"data": [presenter.event_json(e) for e in await svc.history(generation_id)]}


@router.get("/generations/{generation_id}/deliveries")
async def generation_deliveries(generation_id: str, svc: Svc) -> dict[str, Any]:
    """The webhooks sent to your apps about it (REELWATCH_WEBHOOK_URL) and their attempts."""
    return {"data": await svc.deliveries(generation_id)}


@router.post("/generations/{generation_id}/reset")
async def reset(generation_id: str, request: Request, svc: Svc) -> dict[str, Any]:
    """Poll again from scratch (free)."""
    g = await svc.reset(generation_id, actor=actor(request))
    return svc.view(g)


@router.post("/generations/{generation_id}/cancel")
async def cancel(generation_id: str, request: Request, svc: Svc) -> dict[str, Any]:
    g = await svc.cancel(generation_id, actor=actor(request))
    return svc.view(g)


@router.post("/generations/{generation_id}/retry")
async def retry(
    generation_id: str, request: Request, svc: Svc, body: ActionBody | None = None
) -> dict[str, Any]:
    """Resubmit a failed generation; without `{"confirm": true}` it only answers the cost."""
    g, cost = await svc.quote_retry(generation_id)
    if body is None or not body.confirm:
        price = "unknown" if cost is None else f"${cost:.2f}"
        raise ApiError(
            409,
            "confirmation_required",
            f'retrying {g.id} costs about {price}; send {{"confirm": true}} to resubmit',
            estimated_cost_usd=cost,
        )
    g = await svc.retry(generation_id, actor=actor(request), now_too=True)
    return {**svc.view(g), "estimated_cost_usd": cost}


@router.get("/generations/{generation_id}/content", response_model=None)
async def content(
    generation_id: str,
    request: Request,
    svc: Svc,
    variant: Literal["video", "thumbnail", "spritesheet"] = "video",
) -> Response:
    """A stored asset, with its content type; HTTP Range requests are honoured (seeking).
    From a bucket it may be a redirect to a short-lived link (REELWATCH_STORAGE_SERVE)."""
    asset, served = await svc.content(generation_id, Variant(variant))
    return asset_response(request, asset, served)


def asset_response(request: Request, asset: Asset, served: service.Served) -> Response:
    """A stored asset as the answer: the file, a redirect to a short-lived link, or streamed
    with Range support (the API's content route and /v1/videos/{id}/content share it)."""
    filename = asset.key.rsplit("/", 1)[-1]
    match served:
        case service.LocalFile(path=path):
            return FileResponse(path, media_type=asset.content_type, filename=filename)
        case service.Redirect(url=url):
            return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
        case service.Streamed(size=size, read=read):
            return ranged(request.headers.get("range"), size, read, asset.content_type, filename)


def ranged(
    header: str | None,
    size: int,
    read: Callable[[int, int], AsyncIterator[bytes]],
    media_type: str,
    filename: str,
) -> Response:
    """A streamed object, whole or the one byte range asked for (RFC 9110 §14). Several
    ranges are answered whole, which the RFC allows; a range past the end is a 416."""
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Disposition": f'inline; filename="{filename}"',
    }
    span = _one_range(header, size) if header else None
    if span == "unsatisfiable":
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    if span is None:
        headers["Content-Length"] = str(size)
        return StreamingResponse(read(0, size), media_type=media_type, headers=headers)
    start, end = span
    headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    return StreamingResponse(
        read(start, end), status_code=206, media_type=media_type, headers=headers
    )


def _one_range(header: str, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """`bytes=a-b`, `bytes=a-` or `bytes=-n` as [start, end); None to answer whole."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()):
        return None
    if not first:  # the last n bytes
        n = int(last)
        return (max(0, size - n), size) if n > 0 and size > 0 else "unsatisfiable"
    start = int(first)
    end = min(int(last) + 1, size) if last.isdigit() else size
    if start >= size or end <= start:
        return "unsatisfiable"
    return start, end
