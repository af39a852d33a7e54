"""`/v1/videos`: OpenAI's Videos API, answered by reelwatch (see `reelwatch.front`).

An app written for Sora changes one setting (`OPENAI_BASE_URL=http://host:8000/v1`) and runs
again: create (JSON, or multipart with `input_reference`), retrieve, list (cursor, order,
limit), delete, remix (refused: no provider here remixes), and the content with Range
requests. Errors are in OpenAI's shape (web/errors.py). Clients authenticate with
`Authorization: Bearer` and one of REELWATCH_API_TOKEN / REELWATCH_CLIENT_KEYS, compared in
constant time; without any key, only loopback clients are served, as everywhere else.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reelwatch import front
from reelwatch.models import Variant
from reelwatch.web import access
from reelwatch.web.api import asset_response, saved_upload
from reelwatch.web.errors import ApiError

LOCAL_CLIENT = "local"


async def fronted(request: Request) -> front.Front:
    """The app's front (async: FastAPI runs a plain function in a thread, a hop per request)."""
    found: front.Front = request.app.state.front
    return found


async def client_of(request: Request) -> str:
    """Who is asking: a digest of the key presented (never the key), or "local"; its request
    is counted against its rate (REELWATCH_CLIENT_REQUEST_RATE)."""
    settings = request.app.state.settings
    keys: tuple[str, ...] = settings.client_keys
    header = request.headers.get("authorization")
    client = None
    if not keys:
        access.require_local(request)
        client = LOCAL_CLIENT
    for key in keys:
        if access.secret_matches(header, key):
            client = hashlib.sha256(key.encode()).hexdigest()[:32]
            break
    if client is None:
        raise ApiError(401, "invalid_api_key", "Incorrect API key provided.")
    await (await fronted(request)).admit(client, "request")
    return client


Client = Annotated[str, Depends(client_of)]
router = APIRouter(prefix="/v1")


Front = Annotated[front.Front, Depends(fronted)]


class CreateJson(BaseModel):
    """`CreateVideoJsonBody`: the image reference as a URL or file id is not taken (there is
    nothing here to fetch it from safely); send the image itself as multipart."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=32000)
    model: str | None = Field(None, max_length=100)
    seconds: str | int | None = None
    size: str | None = Field(None, max_length=20)
    input_reference: dict[str, Any] | None = None  # refused with words, below


@router.post("/videos")
async def create_video(request: Request, client: Client, fronts: Front) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        return await _create_multipart(request, client, fronts)
    if not content_type.startswith("application/json"):
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data or JSON")
    try:
        body = CreateJson.model_validate_json(await request.body())
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise ApiError(400, "invalid_value", f"{field}: {first['msg']}", param=field) from None
    if body.input_reference is not None:
        raise ApiError(
            400,
            "unsupported_value",
            "input_reference: send the image itself as multipart/form-data "
            "(an image_url or file_id is not fetched here)",
            param="input_reference",
        )
    seconds = None if body.seconds is None else str(body.seconds)
    video, g = await fronts.create(
        client, prompt=body.prompt, model=body.model, seconds=seconds, size=body.size
    )
    return fronts.to_json(video, g)


async def _create_multipart(request: Request, client: str, fronts: front.Front) -> dict[str, Any]:
    """What the SDK sends: form fields, and the first frame as a file."""
    async with request.form(max_files=1, max_fields=10) as form:
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        unknown = set(form.keys()) - {"prompt", "model", "seconds", "size", "input_reference"}
        if unknown:
            field = sorted(unknown)[0]
            raise ApiError(400, "unknown_parameter", f"Unknown parameter: '{field}'.", param=field)
        prompt = fields.get("prompt", "")
        if not prompt:
            raise ApiError(400, "missing_required_parameter", "prompt: required", param="prompt")
        with tempfile.TemporaryDirectory(prefix="reelwatch-upload-") as folder:
            reference = await saved_upload(form.get("input_reference"), Path(folder), 400)
            video, g = await fronts.create(
                client,
                prompt=prompt,
                model=fields.get("model") or None,
                seconds=fields.get("seconds") or None,
                size=fields.get("size") or None,
                input_reference=reference,
            )
    return fronts.to_json(video, g)


@router.get("/videos")
async def list_videos(
    client: Client,
    fronts: Front,
    after: Annotated[str | None, Query(max_length=60)] = None,
    limit: Annotated[int, Query(ge=0, le=front.MAX_PAGE)] = 20,
    order: Literal["asc", "desc"] = "desc",
) -> dict[str, Any]:
    found, more = await fronts.page(client, after=after, limit=limit, newest_first=order == "desc")
    data = [fronts.to_json(video, g) for video, g in found]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": more,
    }


@router.get("/videos/{video_id}")
async def retrieve_video(video_id: str, client: Client, fronts: Front) -> dict[str, Any]:
    video, g = await fronts.get(client, video_id)
    return fronts.to_json(video, g)


@router.delete("/videos/{video_id}")
async def delete_video(video_id: str, client: Client, fronts: Front) -> dict[str, Any]:
    await fronts.delete(client, video_id)
    return {"id": video_id, "object": "video.deleted", "deleted": True}


@router.post("/videos/{video_id}/remix")
async def remix_video(video_id: str, client: Client, fronts: Front) -> dict[str, Any]:
    _, g = await fronts.get(client, video_id)
    raise ApiError(
        400,
        "unsupported",
        f"remix: {g.provider} cannot remix a video; create a new one with the new prompt",
        param="video_id",
    )


@router.get("/videos/{video_id}/content", response_model=None)
async def video_content(
    video_id: str,
    request: Request,
    client: Client,
    fronts: Front,
    variant: Literal["video", "thumbnail", "spritesheet"] = "video",
) -> Response:
    asset, served = await fronts.content(client, video_id, Variant(variant))
    return asset_response(request, asset, served)
