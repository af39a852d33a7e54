"""The dashboard: server-rendered pages, live rows, admin actions with CSRF, charts, login.

Pages are Jinja2 templates; `static/app.js` listens to `/api/events` and swaps in the
re-rendered partials below, so the rows people see are rendered by the same template whether
the page was just loaded or an event arrived. GET never changes anything.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from reelwatch import attention, exceptions, presenter, service
from reelwatch.models import ACTIVE, EventKind, Generation, Status
from reelwatch.web import access, charts
from reelwatch.web.errors import ApiError

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)

PAGE_SIZE = 25
GALLERY_SIZE = 48
# The list's sort choices (store.ORDERS): its words, and the pager's links back and on.
ORDER_WORDS = {
    "newest": ("newest first", "Newer generations", "Older generations"),
    "oldest": ("oldest first", "Older generations", "Newer generations"),
    "changed": ("recently changed", "Changed more recently", "Changed earlier"),
}
BULK_LIMIT = 500
STATE_WORDS = {
    "working": "Working",
    "completed": "Ready",
    "failed": "Failed",
    "cancelled": "Cancelled",
    "stuck": "Stuck?",
}


def state_of(g: Generation, stuck: bool) -> str:
    if stuck:
        return "stuck"
    if g.status in (Status.COMPLETED, Status.FAILED, Status.CANCELLED):
        return g.status.value
    return "working"


def seconds_text(value: float | None) -> str:
    if value is None:
        return "--"
    total = max(0, round(value))
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}:{seconds:02d}"


def ago(value: str | datetime | None, now: datetime) -> str:
    """`3 min ago`, `2 h ago`, `4 d ago` (the exact time goes in the element's title)."""
    if value is None:
        return "--"
    at = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    seconds = max(0.0, (now - at).total_seconds())
    for limit, unit, size in ((60, "s", 1), (3600, "min", 60), (86400, "h", 3600)):
        if seconds < limit:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds // 86400)} d ago"


def exact(value: str | None) -> str:
    """An ISO time as people read it, in UTC."""
    return "" if value is None else value.replace("T", " ")[:19] + " UTC"


templates.env.filters["duration"] = seconds_text
templates.env.filters["exact"] = exact
templates.env.globals["ago"] = ago
templates.env.globals["STATE_WORDS"] = STATE_WORDS
templates.env.globals["event_words"] = presenter.event_words
templates.env.globals["detail_words"] = presenter.detail_words
templates.env.globals["quiet_words"] = presenter.quiet_words
templates.env.globals["CONTENT_REFUSALS"] = presenter.CONTENT_REFUSALS
templates.env.globals["troubleshoot"] = presenter.troubleshoot
templates.env.globals["event_kinds"] = {kind.name: kind.value for kind in EventKind}


def _svc(request: Request) -> service.Service:
    result: service.Service = request.app.state.service
    return result


class LoginRequired(Exception):
    """A page was asked for without a session while a token is set: go and log in."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


def signed_in(request: Request) -> None:
    """Every page's gate (one dependency): with a token set, a session or a login redirect;
    without one, loopback only."""
    if request.app.state.settings.api_token:
        if not access.logged_in(request):
            raise LoginRequired("/login?" + urlencode({"next": request.url.path}))
        return
    access.require_local(request)


async def to_login(request: Request, exc: Exception) -> Response:
    """The handler that turns `LoginRequired` into the redirect."""
    assert isinstance(exc, LoginRequired)
    return RedirectResponse(exc.target, status_code=303)


pages = APIRouter(include_in_schema=False, dependencies=[Depends(signed_in)])


def _actor(request: Request) -> str:
    client = request.client.host if request.client else "unknown"
    return f"dashboard@{client}"


def _render(request: Request, name: str, **context: Any) -> HTMLResponse:
    context.setdefault("csrf", access.csrf_token(request))
    running = getattr(request.app.state, "service", None)
    context.setdefault("now", running.clock.now() if running else datetime.now(UTC))
    context.setdefault("notice", request.query_params.get("notice"))
    # "Sign out" only for a session that signed in (not on the sign-in page itself).
    context.setdefault(
        "login", bool(request.app.state.settings.api_token) and access.logged_in(request)
    )
    return templates.TemplateResponse(request, name, context)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    """A page a person can read for a refused or missing page (the API answers JSON)."""
    titles = {400: "Bad request", 403: "Not allowed", 404: "Not found", 409: "Conflict"}
    response = _render(
        request,
        "error.html",
        status=status,
        title=titles.get(status, "Something went wrong"),
        message=message,
    )
    response.status_code = status
    return response


def wants_page(request: Request) -> bool:
    """A browser asking for a dashboard page, not the API, an SSE stream or a script."""
    path = request.url.path
    if path.startswith(("/api/", "/cron", "/metrics", "/healthz", "/readyz", "/static/")):
        return False
    return "text/html" in request.headers.get("accept", "")


def _row(svc: service.Service, g: Generation) -> dict[str, Any]:
    view = svc.view(g)
    view["state"] = state_of(g, view["suspected_stuck"])
    view["cost"] = view["estimated_cost_usd"]
    return view


def _back(target: str | None, notice: str) -> RedirectResponse:
    path = target if target and target.startswith("/") and not target.startswith("//") else "/"
    joiner = "&" if "?" in path else "?"
    return RedirectResponse(f"{path}{joiner}notice={quote(notice)}", status_code=303)


# --- pages ----------------------------------------------------------------------------------


@pages.get("/", response_class=HTMLResponse)
async def index(
    request: Request,
    status: str = "",
    provider: str = "",
    model: str = "",
    q: str = "",
    cursor: str | None = None,
    before: str | None = None,
    order: str = "newest",
) -> Response:
    svc = _svc(request)
    statuses = [Status(status)] if status in {s.value for s in Status} else []
    order = order if order in ORDER_WORDS else "newest"
    page = await svc.page(
        statuses=statuses,
        provider=provider or None,
        model=model or None,
        text=q or None,
        limit=PAGE_SIZE,
        cursor=cursor,
        before=before,
        order=order,
    )
    filters = {"status": status, "provider": provider, "model": model, "q": q, "order": order}
    kept = {k: v for k, v in filters.items() if v and (k, v) != ("order", "newest")}
    next_link = prev_link = None
    if page.next_cursor:
        next_link = "/?" + urlencode({**kept, "cursor": page.next_cursor})
    if page.prev_cursor:
        prev_link = "/?" + urlencode({**kept, "before": page.prev_cursor})
    elif cursor:
        prev_link = "/?" + urlencode(kept)  # an empty next page: back to the first
    counts = await svc.counts()
    return _render(
        request,
        "list.html",
        choices=_new_form(svc),
        counts=[(s.value, counts.get(s, 0)) for s in Status],
        total=sum(counts.values()),
        rows=[_row(svc, g) for g in page.items],
        filters=filters,
        statuses=[s.value for s in Status],
        orders=ORDER_WORDS,
        models=svc.models(),
        providers=svc.provider_names(),
        next_link=next_link,
        prev_link=prev_link,
        first_page=cursor is None and page.prev_cursor is None,
    )


@pages.get("/gallery", response_class=HTMLResponse)
async def gallery(request: Request, cursor: str | None = None) -> Response:
    """The stored videos as a wall of thumbnails, newest first."""
    svc = _svc(request)
    page = await svc.page(statuses=[Status.COMPLETED], limit=GALLERY_SIZE, cursor=cursor)
    next_link = "/gallery?" + urlencode({"cursor": page.next_cursor}) if page.next_cursor else None
    return _render(
        request,
        "gallery.html",
        items=[_row(svc, g) for g in page.items],
        next_link=next_link,
        first_page=cursor is None,
    )


@pages.get("/partials/row/{generation_id}", response_class=HTMLResponse)
async def row_partial(request: Request, generation_id: str) -> Response:
    svc = _svc(request)
    g = await svc.get(generation_id)
    return _render(request, "_row.html", row=_row(svc, g))


@pages.get("/generations/{generation_id}", response_class=HTMLResponse)
async def detail(request: Request, generation_id: str) -> Response:
    return await _detail(request, generation_id, "generation.html")


@pages.get("/partials/generations/{generation_id}", response_class=HTMLResponse)
async def detail_partial(request: Request, generation_id: str) -> Response:
    return await _detail(request, generation_id, "_detail.html")


async def _detail(request: Request, generation_id: str, template: str) -> Response:
    svc = _svc(request)
    g = await svc.get(generation_id)
    events = await svc.history(generation_id)
    return _render(
        request,
        template,
        g=g,
        row=_row(svc, g),
        events=presenter.timeline(events, g),
        variants=[v.value for v in g.assets],
        files=presenter.files_words(g, svc.settings.retention_days, events),
    )


@pages.get("/admin", response_class=HTMLResponse)
async def admin(request: Request) -> Response:
    svc = _svc(request)
    now = svc.clock.now()
    policy = svc.policy(svc.default_provider)
    active = (await svc.page(statuses=sorted(ACTIVE), limit=1000)).items
    failed = (await svc.page(statuses=[Status.FAILED], limit=1000)).items
    found = attention.attention(active, failed, now, policy)
    return _render(
        request,
        "admin.html",
        found=found,
        row=lambda g: _row(svc, g),
        stuck_after=seconds_text(attention.stuck_after_s(policy)),
        statuses=[s.value for s in Status],
        models=svc.models(),
    )


@pages.get("/charts", response_class=HTMLResponse)
async def charts_page(request: Request) -> Response:
    svc = _svc(request)
    now = svc.clock.now()
    recent = (await svc.page(since=now - timedelta(hours=24), limit=1000)).items
    spans = attention.durations(recent)
    return _render(
        request,
        "charts.html",
        hourly=charts.hourly_svg(attention.per_hour(recent, now)),
        queue=charts.histogram_svg(
            attention.histogram(spans["queue"]), "queue time (s)", spans["queue"]
        ),
        render=charts.histogram_svg(
            attention.histogram(spans["render"]), "render time (s)", spans["render"]
        ),
        lag=charts.histogram_svg(
            attention.histogram(spans["lag"]), "detection lag (s)", spans["lag"]
        ),
        counts={k: len(v) for k, v in spans.items()},
        total=len(recent),
    )


# --- actions (POST, CSRF-checked) -------------------------------------------------------------


async def _form(request: Request) -> dict[str, str]:
    async with request.form(max_files=0, max_fields=20) as form:
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
    access.check_csrf(request, fields.get("csrf"))
    return fields


def _new_form(svc: service.Service) -> list[dict[str, Any]]:
    """The configured providers, their models and the inputs people usually set."""
    return [
        {
            "name": item["name"],
            "default": item["default"],
            "models": item["models"],
            "default_model": item["default_model"],
        }
        for item in svc.describe_providers()
        if item["configured"]
    ]


@pages.get("/new", response_class=HTMLResponse)
async def new_page(request: Request) -> Response:
    svc = _svc(request)
    return _render(request, "new.html", choices=_new_form(svc))


@pages.post("/new")
async def new_submit(request: Request) -> Response:
    """The form without its script: create, then show the generation's page."""
    fields = await _form(request)
    params: dict[str, Any] = {}
    for key in ("seconds", "size"):
        value = fields.get(key, "").strip()
        if value:
            params[key] = int(value) if key == "seconds" and value.isdigit() else value
    for line in fields.get("params", "").splitlines():
        key, sep, value = line.partition("=")
        if line.strip():
            if not sep or not key.strip():
                raise exceptions.InvalidInput(f"params: {line.strip()!r} is not KEY=VALUE")
            params[key.strip()] = value.strip()
    submit = service.SubmitRequest(
        fields.get("prompt", ""),
        fields.get("provider") or None,
        fields.get("model") or None,
        params,
    )
    g = await _svc(request).submit(submit, actor=_actor(request))
    return RedirectResponse(f"/generations/{g.id}?notice={quote('Submitted ' + g.id)}", 303)


@pages.post("/generations/{generation_id}/reset")
async def reset(request: Request, generation_id: str) -> Response:
    fields = await _form(request)
    await _svc(request).reset(generation_id, actor=_actor(request))
    return _back(fields.get("next"), f"Reset {generation_id}: it is polled again from scratch")


@pages.post("/generations/{generation_id}/cancel")
async def cancel(request: Request, generation_id: str) -> Response:
    fields = await _form(request)
    await _svc(request).cancel(generation_id, actor=_actor(request))
    return _back(fields.get("next"), f"Cancelled {generation_id}")


@pages.get("/generations/{generation_id}/retry", response_class=HTMLResponse)
async def retry_confirm(request: Request, generation_id: str) -> Response:
    svc = _svc(request)
    g, cost = await svc.quote_retry(generation_id)
    return _render(request, "retry.html", g=g, cost=cost, next=request.query_params.get("next"))


@pages.post("/generations/{generation_id}/retry")
async def retry(request: Request, generation_id: str) -> Response:
    fields = await _form(request)
    if fields.get("confirm") != "yes":
        raise ApiError(400, "confirmation_required", "confirm the cost to resubmit")
    svc = _svc(request)
    await svc.retry(generation_id, actor=_actor(request), now_too=True)
    return _back(fields.get("next"), f"Resubmitted {generation_id}")


def _bulk_filter(params: dict[str, str]) -> dict[str, Any]:
    """What a bulk action acts on: the rows ticked (`ids`), or a status with an optional error
    code and model. Retry resubmits failed generations only: any other status is refused,
    never silently replaced."""
    action = params.get("action", "")
    if action not in ("retry", "cancel"):
        raise exceptions.InvalidInput("action: choose retry or cancel")
    ids = [i.strip() for i in params.get("ids", "").split(",") if i.strip()][:BULK_LIMIT]
    status = params.get("status", "")
    if action == "retry":
        if status not in ("", "failed"):
            raise exceptions.InvalidInput(
                f"status: retry resubmits failed generations only, not {status}"
            )
        status = "failed"
    elif not ids and status not in {s.value for s in Status}:
        raise exceptions.InvalidInput("status: choose a status")
    return {
        "action": action,
        "status": status,
        "code": params.get("code") or "",
        "model": params.get("model") or "",
        "ids": ",".join(ids),
    }


async def _bulk_targets(svc: service.Service, chosen: dict[str, Any]) -> list[Generation]:
    if chosen["ids"]:
        found = []
        for generation_id in chosen["ids"].split(","):
            try:
                g = await svc.get(generation_id)
            except exceptions.NotFound:
                continue
            if chosen["status"] and g.status.value != chosen["status"]:
                continue  # a ticked row that retry cannot act on
            if chosen["action"] == "cancel" and not g.active:
                continue
            found.append(g)
        return found
    page = await svc.page(
        statuses=[Status(chosen["status"])],
        error_code=chosen["code"] or None,
        model=chosen["model"] or None,
        limit=BULK_LIMIT,
    )
    return page.items


@pages.get("/admin/bulk", response_class=HTMLResponse)
async def bulk_preview(request: Request) -> Response:
    svc = _svc(request)
    params = dict(request.query_params)
    params["ids"] = ",".join(request.query_params.getlist("ids"))  # one per ticked row
    chosen = _bulk_filter(params)
    targets = await _bulk_targets(svc, chosen)
    costs = [svc.cost(g) for g in targets]
    total = sum(c for c in costs if c is not None) if chosen["action"] == "retry" else None
    refused = [g for g in targets if g.error and g.error.code in presenter.CONTENT_REFUSALS]
    ticked = len(chosen["ids"].split(",")) if chosen["ids"] else 0
    return _render(
        request,
        "bulk.html",
        chosen={k: v for k, v in chosen.items() if k != "ids"},
        targets=targets,
        total=total,
        limit=BULK_LIMIT,
        refused=refused,
        skipped=max(0, ticked - len(targets)),
        next=request.query_params.get("next"),
    )


@pages.post("/admin/bulk")
async def bulk(request: Request) -> Response:
    fields = await _form(request)
    if fields.get("confirm") != "yes":
        raise ApiError(400, "confirmation_required", "confirm to act on these generations")
    svc = _svc(request)
    chosen = _bulk_filter(fields)
    # Only what the preview showed (and priced): the filter may match more by now.
    previewed = [i for i in chosen["ids"].split(",") if i][:BULK_LIMIT]
    done = 0
    for generation_id in previewed:
        try:
            g = await svc.get(generation_id)
            if chosen["status"] and g.status.value != chosen["status"]:
                continue  # changed since the preview
            if chosen["action"] == "retry":
                await svc.retry(g.id, actor=_actor(request))
            else:
                await svc.cancel(g.id, actor=_actor(request))
        except (exceptions.NotAllowed, exceptions.NotFound):
            continue  # changed since the preview
        done += 1
    verb = "Resubmitted" if chosen["action"] == "retry" else "Cancelled"
    return _back(fields.get("next") or "/admin", f"{verb} {done} generation(s)")


# --- login ------------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str = "/") -> Response:
    return _render(request, "login.html", next=next, error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    fields = await _form(request)
    token = request.app.state.settings.api_token
    if not token or not access.secret_matches(f"Bearer {fields.get('token', '')}", token):
        response = _render(request, "login.html", next=fields.get("next", "/"), error=True)
        response.status_code = 401
        return response
    request.session["user"] = True
    return _back(fields.get("next"), "Signed in")


@router.post("/logout")
async def logout(request: Request) -> Response:
    await _form(request)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


def now_text(value: datetime | None) -> str:
    return "--" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


templates.env.filters["when"] = now_text
