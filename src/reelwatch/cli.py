"""The `reelwatch` command line: one `asyncio.run` per command, one-line errors, `--json` output.

Start-up is most of a read command's time, so this module imports only what `--help` needs
(typer, rich, the `Status` enum) and each command imports the rest itself: the service and the
store (SQLAlchemy) for the commands that read or write, Alembic only where a migration runs
(`Store.open`), a provider's SDK only where that provider is built, prometheus_client only for
`worker --metrics-port`. Read commands (`status`, `list`, `history`) open the database read-only:
they never create or migrate it, and build no provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from reelwatch import exceptions
from reelwatch.models import Event, Generation, Status

if TYPE_CHECKING:
    from reelwatch import service
    from reelwatch.settings import Settings

app = typer.Typer(
    name="reelwatch",
    help="Run asynchronous AI video generation in production.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")

# No markup, highlighting or :emoji: codes: what is printed is the text, made printable.
out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
T = TypeVar("T")

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def fail(message: str, code: int = 1) -> typer.Exit:
    say(f"error: {message}", console=err)
    return typer.Exit(code)


def say(text: str, *, console: Console = out) -> None:
    """A line for people. Text from outside (prompts, the provider's messages, ids) may carry
    control characters: they are shown as escapes, so it cannot forge lines or drive the
    terminal."""
    from reelwatch import logs

    console.print(logs.printable(text), markup=False)


def emit_json(data: Any) -> None:
    """Machine-readable output: the data exact, every control character (and all non-ASCII)
    escaped by JSON, so it is safe on a terminal too."""
    out.print_json(data=data, ensure_ascii=True)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine, turning reelwatch errors into one line on stderr and exit code 1."""
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(coro)
    except exceptions.ReelwatchError as exc:
        raise fail(exc.message) from None


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (every platform but Windows): the worker's event loop
    overhead is a large share of its CPU per status check, and with uvloop one worker kept a
    p99 detection lag of 1.4 s at 10,000 active generations instead of 2.1-3.2 s
    (docs/benchmarks.md). `serve` gets it from uvicorn, which picks uvloop when present."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def load_settings(*, level: int = logging.WARNING) -> Settings:
    from reelwatch import logs
    from reelwatch import settings as settings_module

    try:
        loaded = settings_module.load()
    except exceptions.ConfigError as exc:
        raise fail(exc.message) from None
    logs.configure(loaded.log_format, level=level)
    return loaded


def with_service(
    fn: Callable[[service.Service], Awaitable[T]],
    *,
    need_provider: bool = False,
    read_only: bool = False,
    looking_for: str | None = None,
) -> tuple[service.Service, T]:
    """Open the service, run one request, close it; the service's clock and storage stay usable.

    `read_only` (the read commands): the database must exist at this version's schema (it is
    neither created nor migrated) and no provider is built, so no SDK is imported. A read of
    one generation (`looking_for`) without a database says that generation is not there, and
    why."""
    from reelwatch import assembly

    settings = load_settings()

    async def main() -> tuple[service.Service, T]:
        opened = assembly.open_service(settings, need_provider=need_provider, read_only=read_only)
        try:
            async with opened as svc:
                return svc, await fn(svc)
        except exceptions.NoDatabase as exc:
            if looking_for is None:
                raise
            raise exceptions.NotFound(f"no generation {looking_for}: {exc.message}") from None

    return run(main())


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` pairs; whole numbers become ints and true/false booleans (the adapter
    checks each against what its API takes)."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise exceptions.InvalidInput(f"--param: {pair!r} is not KEY=VALUE")
        value: Any = raw
        if raw.isascii() and raw.isdigit() and len(raw) <= 9:
            value = int(raw)
        elif raw in ("true", "false"):
            value = raw == "true"
        params[key.strip()] = value
    return params


def print_generation(svc: service.Service, g: Generation, as_json: bool) -> None:
    if as_json:
        emit_json(svc.view(g))
        return
    from reelwatch import presenter

    view = svc.view(g)
    say(f"{g.id}  {g.status.value:<11} {g.progress:>3}%  {g.step}")
    for line in presenter.summary_lines(view):
        say(f"  {line}")
    for variant, asset in g.assets.items():
        path = svc.storage.locate(asset.key)
        say(f"  {variant.value}: {path} ({asset.bytes} bytes)")
    if g.error is not None:
        trouble = presenter.troubleshoot(g.error.code, g.error.message)
        say(f"  {trouble.title} ({g.error.code}): {g.error.message}")
        say(f"  What happened: {trouble.what}")
        say(f"  What to do: {trouble.next}")


@app.command()
def submit(
    prompt: Annotated[str, typer.Argument(help="What the video should show.")],
    provider: Annotated[
        str | None,
        typer.Option(help="Provider name (default REELWATCH_PROVIDER); see `providers`."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model (default: the provider's).")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="A provider input, KEY=VALUE (repeatable)."),
    ] = None,
    seconds: Annotated[int | None, typer.Option(help="Shorthand for --param seconds=N.")] = None,
    size: Annotated[str | None, typer.Option(help="Shorthand for --param size=WxH.")] = None,
    input_reference: Annotated[
        Path | None, typer.Option("--input-reference", help="First-frame image (jpg/png/webp).")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Watch it live until it finishes.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Submit a new generation (it is stored before the provider is asked)."""
    from reelwatch import live, providers, service

    try:
        params = parse_params(param or [])
        if seconds is not None:
            params["seconds"] = seconds
        if size is not None:
            params["size"] = size
        request = service.SubmitRequest(prompt, provider, model, params, input_reference)
        service.check_request(request)
        name = provider or providers.default_name(load_settings())
        catalogue = providers.catalogue(name)
        catalogue.validate(model or catalogue.default_model, params)
    except exceptions.InvalidInput as exc:
        raise fail(exc.message) from None

    async def main(svc: service.Service) -> tuple[Generation, str | None]:
        g = await svc.submit(request)
        if g.status is Status.PENDING and g.video_id is None:
            return g, _not_accepted(g, await svc.history(g.id))
        if wait and g.active:
            g = (await live.watch(svc, [g.id], console=err))[0]
        return g, None

    svc, (g, refused) = with_service(main)
    print_generation(svc, g, as_json)
    if refused is not None:
        raise fail(refused)
    if g.status is Status.FAILED:
        raise fail(f"{g.id} failed: {g.error.message if g.error else 'unknown'}")


def _not_accepted(g: Generation, events: list[Event]) -> str:
    """Why the provider has not taken a submitted generation, and what happens to it now."""
    reason = next(
        (str(e.data["reason"]) for e in reversed(events) if e.data.get("reason")), "no answer"
    )
    if g.submit_ambiguous:
        return (
            f"{g.id}: the provider did not answer the create ({reason}). It may exist there:"
            " it stays pending and is looked for before anything is sent again"
        )
    return (
        f"{g.id} was not sent: {reason}. It stays pending and is sent again when the"
        f" provider answers (`reelwatch cancel {g.id}` drops it)"
    )


@app.command()
def track(
    video_id: str,
    provider: Annotated[
        str | None, typer.Option(help="Provider name (default REELWATCH_PROVIDER).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Monitor a generation created elsewhere, by the provider's job id."""
    svc, g = with_service(lambda svc: svc.track(video_id, provider=provider))
    print_generation(svc, g, as_json)


@app.command()
def status(
    generation_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonOption = False
) -> None:
    """Show one generation."""
    svc, g = with_service(
        lambda svc: svc.get(generation_id), read_only=True, looking_for=generation_id
    )
    print_generation(svc, g, as_json)


@app.command("list")
def list_(
    status: Annotated[
        list[Status] | None, typer.Option("--status", help="Only these statuses (repeatable).")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many.")] = 20,
    cursor: Annotated[str | None, typer.Option(help="Continue after a previous page.")] = None,
    order: Annotated[
        str, typer.Option(help="newest, oldest, or changed (most recently changed first).")
    ] = "newest",
    search: Annotated[
        str | None, typer.Option("--search", "-q", help="Prompt text, our id or provider id.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List generations, newest first."""
    from reelwatch import presenter

    svc, page = with_service(
        lambda svc: svc.page(
            statuses=status or (), limit=limit, cursor=cursor, order=order, text=search
        ),
        read_only=True,
    )
    now = svc.clock.now()
    if as_json:
        items = [presenter.to_json(g, now) for g in page.items]
        emit_json({"data": items, "next_cursor": page.next_cursor})
        return
    for g in page.items:
        created = presenter.iso(g.created_at) or ""
        view = presenter.to_json(g, now, host=svc.host(g.provider))
        eta = view["eta_text"] if g.active else None
        step = f"{view['step']} ({eta})" if eta else view["step"]
        line = f"{g.id}  {created[:16].replace('T', ' ')}  {g.status.value:<11} {g.progress:>3}%"
        say(f"{line}  {g.model:<10} {step}")
    if page.next_cursor:
        say(f"more: --cursor {page.next_cursor}")


@app.command()
def history(
    generation_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonOption = False
) -> None:
    """Everything that happened to one generation (its audit log)."""
    from reelwatch import presenter

    async def both(svc: service.Service) -> tuple[Generation, list[Event]]:
        return await svc.get(generation_id), await svc.history(generation_id)

    _, (g, events) = with_service(both, read_only=True, looking_for=generation_id)
    if as_json:
        emit_json([presenter.event_json(e) for e in events])
        return
    for e in presenter.timeline(events, g):
        if e["kind"] == "quiet":
            first, last = (str(e[k] or "")[:19].replace("T", " ") for k in ("from", "to"))
            say(f"{first}  {presenter.quiet_words(e)}, until {last[11:]}")
            continue
        who = f" by {e['actor']}" if e["actor"] else ""
        details = ", ".join(f"{k} {v}" for k, v in presenter.detail_words(e["data"]))
        when = str(e["at"])[:19].replace("T", " ")
        state = f"{e['status']:<11} {e['progress']:>3}%"
        say(f"{when}  {presenter.event_words(e['kind']):<28} {state}{who}  {details}")


@app.command()
def reset(
    generation_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonOption = False
) -> None:
    """Poll a generation again from scratch (free: nothing is resubmitted)."""
    svc, g = with_service(lambda svc: svc.reset(generation_id))
    print_generation(svc, g, as_json)


@app.command()
def retry(
    generation_id: Annotated[str, typer.Argument(metavar="ID")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Resubmit a failed generation (paid: shows the estimated cost and asks first)."""

    _, (g, cost) = with_service(lambda svc: svc.quote_retry(generation_id))
    price = "unknown" if cost is None else f"${cost:.2f}"
    say(f"Retrying {g.id} ({g.provider}, {g.model}) costs about {price}.", console=err)
    if not yes:
        if not sys.stdin.isatty():
            raise fail("retry needs confirmation: pass --yes")
        if not typer.confirm("Resubmit?", default=False):
            raise fail("cancelled; nothing was resubmitted")

    svc, g = with_service(lambda svc: svc.retry(generation_id, now_too=True))
    print_generation(svc, g, as_json)


@app.command()
def cancel(
    generation_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonOption = False
) -> None:
    """Stop monitoring a generation."""
    svc, g = with_service(lambda svc: svc.cancel(generation_id))
    print_generation(svc, g, as_json)


@app.command("providers")
def providers_(as_json: JsonOption = False) -> None:
    """The providers reelwatch can use: configured or not, models, and what each can do."""
    _, described = with_service(_described)
    if as_json:
        emit_json({"data": described})
        return
    for item in described:
        state = "configured" if item["configured"] else f"not configured: set {item['missing']}"
        mark = " (default)" if item["default"] else ""
        say(f"{item['name']}{mark}  {state}  {item['base_url']}")
        caps = item["capabilities"]
        say(f"  models: {', '.join(item['models'])}")
        listing, cancelling = (("yes" if caps[k] else "no") for k in ("can_list", "can_cancel"))
        say(
            f"  progress: {', '.join(caps['progress'])}; list: {listing}"
            f"; cancel: {cancelling}; assets: {caps['assets']}"
            f" ({caps['asset_lifetime']}); webhooks: {caps['webhooks'] or 'none'}"
            f"{' (on)' if item['webhooks'] else ''}"
        )


async def _described(svc: service.Service) -> list[dict[str, Any]]:
    return svc.describe_providers()


@app.command()
def worker(
    once: Annotated[bool, typer.Option("--once", help="Run one cycle, print its summary.")] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            envvar="REELWATCH_WORKER_METRICS_PORT",
            min=1,
            max=65535,
            help="Serve this worker's Prometheus metrics on this port (off by default).",
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="Interface for --metrics-port (the metrics have no login).")
    ] = "127.0.0.1",
) -> None:
    """The background monitor: every active generation moves on its own."""
    from reelwatch import assembly

    settings = load_settings(level=logging.WARNING if once else logging.INFO)

    async def main() -> dict[str, Any] | None:
        # The continuous worker waits for an unreachable database rather than exiting.
        opened = assembly.open_service(settings, need_provider=True, wait_for_database=not once)
        async with opened as svc:
            if once:
                return (await svc.cycle()).to_json()

            def work(stop: asyncio.Event) -> Awaitable[None]:
                return svc.run(stop, supervised=False)

            if metrics_port is None:
                await run_until_signalled(work)
                return None
            import prometheus_client

            from reelwatch import metrics

            collected = metrics.Metrics(tables=False)
            collected.track_worker()
            for runner in svc.engines.values():
                runner.metrics = collected
            try:
                server, _ = prometheus_client.start_http_server(
                    metrics_port, addr=metrics_host, registry=collected.registry
                )
            except OSError as exc:
                raise exceptions.ConfigError(
                    f"--metrics-port: cannot listen on {metrics_host}:{metrics_port}: {exc}"
                ) from exc
            try:
                await run_until_signalled(work)
            finally:
                server.shutdown()
                server.server_close()
            return None

    summary = run(main())
    if summary is not None:
        emit_json(summary)


async def run_until_signalled(work: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run until SIGINT or SIGTERM; handlers are installed here and restored after."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await work(stop)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Serve only; workers or the cron route poll.")
    ] = False,
) -> None:
    """HTTP API, live events, metrics (and the dashboard), with the worker in-process."""
    from reelwatch import providers, serving
    from reelwatch.store import Store
    from reelwatch.web import access, create_app

    settings = load_settings(level=logging.INFO)
    if access.public_host(host) and not settings.api_token:
        raise fail(
            f"refusing to serve on {host} without REELWATCH_API_TOKEN; set one or bind 127.0.0.1"
        )

    async def check() -> None:
        store = await Store.open(settings.database_url)  # migrate now; fail here, in one line
        await store.close()

    run(check())
    if not providers.configured(settings):
        needed = ", ".join(
            missing
            for name in providers.NAMES
            if (missing := providers.config(name, settings).missing)
        )
        err.print(f"no provider is configured ({needed}): serving without a worker", markup=False)
    try:
        sock = serving.bind(host, port)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    err.print(
        f"reelwatch on http://{serving.url_host(host)}:{sock.getsockname()[1]}/", markup=False
    )
    serving.serve(create_app(settings, run_worker=not no_worker), sock)


@app.command()
def simulate(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    queue_seconds: Annotated[float, typer.Option(help="Time each job waits in the queue.")] = 2.0,
    render_seconds: Annotated[float, typer.Option(help="Time each job renders.")] = 8.0,
    api_key: Annotated[str | None, typer.Option(help="Require this bearer key.")] = None,
    webhook_url: Annotated[str | None, typer.Option(help="POST signed webhooks here.")] = None,
    webhook_secret: Annotated[str | None, typer.Option(help="whsec_... signing secret.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the job scripts.")] = 0,
    progress: Annotated[
        str,
        typer.Option(help="How progress reads: linear, lumps, easeout, stall or none."),
    ] = "linear",
    render_spread: Annotated[
        float | None,
        typer.Option(
            help="Draw each render time around --render-seconds (for 8 seconds of video, in "
            "proportion for others) with this relative spread, e.g. 0.2.",
            min=0.0,
        ),
    ] = None,
    queue_per_active: Annotated[
        float,
        typer.Option(help="Extra queue seconds per job already queued or rendering.", min=0.0),
    ] = 0.0,
) -> None:
    """Every provider's video API, simulated, for demos and tests (no key, no internet)."""
    from reelwatch import serving, simulator

    try:
        config = simulator.SimConfig(
            api_key=api_key,
            queue_s=(queue_seconds, queue_seconds),
            render_s=(render_seconds, render_seconds),
            seed=seed,
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            progress=progress,
            render_spread=render_spread,
            model_render_s={},  # every model's mean is --render-seconds
            queue_per_active_s=queue_per_active,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        sock = serving.bind(host, port)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    with contextlib.suppress(KeyboardInterrupt):
        simulator.serve(config, sock=sock)


@app.command()
def demo(
    count: Annotated[
        int | None,
        typer.Option(help="How many sample generations (default: one of each sample).", min=1),
    ] = None,
    stay: Annotated[
        bool, typer.Option("--stay", help="Keep serving the dashboard afterwards (Ctrl-C ends).")
    ] = False,
) -> None:
    """Simulator + server + worker with sample generations: watch them finish, files on disk."""
    from reelwatch import demo as demo_module

    settings = load_settings(level=logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        run(demo_module.run(settings, count=count, console=out, stay=stay))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations (the worker and server also do this on start)."""
    from reelwatch.store import Store

    settings = load_settings()

    async def main() -> None:
        store = await Store.open(settings.database_url)
        await store.close()

    run(main())
    out.print("database schema is up to date", markup=False)


def main() -> None:
    app()
