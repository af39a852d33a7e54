"""The dashboard in a real headless Chromium (Debian's), driven by Playwright, over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, Route, async_playwright, expect

from reelwatch import serving, settings, simulator
from reelwatch.simulator import samples
from reelwatch.web import create_app

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

CHROMIUM = os.environ.get("REELWATCH_CHROMIUM", "/usr/bin/chromium")
# The README's screenshots are refreshed only when asked (REELWATCH_UPDATE_SCREENSHOTS=1 make
# test): a test run must not rewrite tracked files. Otherwise they go to a scratch folder.
SCREENSHOTS = (
    Path(__file__).resolve().parent.parent / "docs" / "screenshots"
    if os.environ.get("REELWATCH_UPDATE_SCREENSHOTS")
    else Path(tempfile.gettempdir()) / "reelwatch-screenshots"
)
TOKEN = "dash-sentinel-token"


class OffsetClock:
    """Real time plus an offset tests can push forward (the simulator's clock moves with it)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class Site:
    origin: str
    api: httpx.AsyncClient
    sim: simulator.RunningSimulator
    clock: OffsetClock

    def advance(self, seconds: float) -> None:
        self.clock.offset += timedelta(seconds=seconds)
        self.sim.sim.clock.advance(seconds)

    async def create(self, prompt: str, **fields: Any) -> dict[str, Any]:
        response = await self.api.post("/api/generations", json={"prompt": prompt, **fields})
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data

    async def get(self, gid: str) -> dict[str, Any]:
        data: dict[str, Any] = (await self.api.get(f"/api/generations/{gid}")).json()
        return data

    async def wait_for(self, gid: str, *statuses: str, within_s: float = 30) -> dict[str, Any]:
        async with asyncio.timeout(within_s):
            while (g := await self.get(gid))["status"] not in statuses:
                await asyncio.sleep(0.2)
        return g


@contextlib.contextmanager
def _site(
    tmp_path: Path, *, every_provider: bool = False, **changes: Any
) -> Iterator[tuple[str, simulator.RunningSimulator, OffsetClock]]:
    config = simulator.SimConfig(
        api_key="sk-dash", queue_s=(0.5, 0.5), render_s=(6.0, 6.0), sample_media=True
    )
    with simulator.running(config) as sim:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "provider_config": (
                samples.client_config(sim, "sk-dash")
                if every_provider
                else {"openai": {"api_key": "sk-dash", "base_url": sim.base_url}}
            ),
            "poll_min_seconds": 0.3,
            "poll_max_seconds": 1.0,
            **changes,
        }
        clock = OffsetClock()
        app = create_app(settings.load(**values), clock=clock)
        with serving.in_thread(app, probe="/healthz", name="reelwatch-dashboard") as origin:
            yield origin, sim, clock


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    with _site(tmp_path) as (origin, sim, clock):
        async with httpx.AsyncClient(base_url=origin, timeout=10) as api:
            yield Site(origin, api, sim, clock)


@pytest.fixture
async def site_all(tmp_path: Path) -> AsyncIterator[Site]:
    """A site with every provider configured against the simulator."""
    with _site(tmp_path, every_provider=True) as (origin, sim, clock):
        async with httpx.AsyncClient(base_url=origin, timeout=10) as api:
            yield Site(origin, api, sim, clock)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"Chromium is required in CI: {CHROMIUM} is missing")
        # Locally without Chromium the browser tests cannot run; in CI (above) they fail instead.
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield launched
        await launched.close()


@pytest.fixture(params=[(1280, 900), (390, 844)], ids=["desktop", "phone"])
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """Each browser test runs at a desktop's width and a phone's."""
    width, height = request.param
    context = await browser.new_context(viewport={"width": width, "height": height})
    opened = await context.new_page()
    yield opened
    await context.close()


def shot(name: str, page: Page | None = None) -> str:
    """Where a screenshot goes; a phone-width page's gets "-phone" in its name."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size if page is not None else None
    if size is not None and size["width"] < 600:
        name = name.replace(".png", "-phone.png")
    return str(SCREENSHOTS / name)


async def test_list_moves_live_and_toasts_on_completion(site: Site, page: Page) -> None:
    """The list's progress bar advances with no reload, and a toast links to the finished video."""
    await site.create("A paper boat drifting down a rain-soaked street")
    await site.create("[sim:fail=moderation_blocked] refused", seconds=8)
    g = await site.create("A red fox in fresh snow, slow motion [sim:queue=0.5,render=8]")
    await page.goto(site.origin + "/")
    await page.evaluate("window.__sameDocument = true")
    bar = page.locator(f'tr[data-generation="{g["id"]}"] [role=progressbar]')
    await expect(bar).to_be_visible()
    seen: set[int] = set()
    async with asyncio.timeout(20):
        while len(seen) < 3:
            seen.add(int(await bar.get_attribute("aria-valuenow") or 0))
            await asyncio.sleep(0.2)
    assert max(seen) > 0 and len(seen) >= 3  # it moved through several values
    toast = page.locator(".toast", has_text="Ready: “").first
    await expect(toast).to_be_visible(timeout=20000)
    named = await toast.inner_text()
    assert any(name in named for name in ("A paper boat", "A red fox"))
    assert await page.evaluate("window.__sameDocument") is True  # no reload happened
    failed = page.locator(".toast.failed").first
    await expect(failed).to_be_visible(timeout=20000)
    await expect(failed).to_contain_text("“[sim:fail=moderation_blocked] refused”")
    await page.screenshot(path=shot("list.png", page), full_page=True)
    link = toast.locator("a")
    assert (await link.get_attribute("href") or "").startswith("/generations/")


async def test_providers_side_by_side_with_their_own_step_words(site_all: Site, page: Page) -> None:
    """Each row names its provider; a queued fal request says where it is in the queue, live;
    the provider filter shows only that provider's generations."""
    site = site_all
    waiting = await site.create("[sim:queue=40,render=5] waits its turn", provider="fal")
    others = [
        await site.create("[sim:queue=0,render=3] a harbour at dusk", provider="replicate"),
        await site.create("[sim:queue=0,render=3] a paper boat", provider="openai"),
    ]
    await page.goto(site.origin + "/")
    row = page.locator(f'tr[data-generation="{waiting["id"]}"]')
    await expect(row).to_contain_text("fal · fal-ai/veo3/fast")
    await expect(row).to_contain_text("ahead in the queue", timeout=15000)
    for g in others:
        await site.wait_for(g["id"], "completed")
        other = page.locator(f'tr[data-generation="{g["id"]}"]')
        await expect(other).to_contain_text(g["provider"])
        await expect(other.locator(".badge")).to_have_text("Ready", timeout=15000)
    await page.screenshot(path=shot("providers.png", page), full_page=True)
    await page.select_option("form.filters select[name=provider]", "fal")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("tr[data-generation]")).to_have_count(1)
    await expect(page.locator(f'tr[data-generation="{waiting["id"]}"]')).to_be_visible()


async def test_generation_page_plays_the_video_and_shows_the_timeline(
    site: Site, page: Page
) -> None:
    """The finished video plays from the content route; every step is on the timeline."""
    g = await site.create("Timelapse of a harbour city from noon to night [sim:queue=0,render=1]")
    await site.wait_for(g["id"], "completed")
    await page.goto(f"{site.origin}/generations/{g['id']}")
    video = page.locator("video#player")
    await expect(video).to_be_visible()
    await page.evaluate("document.getElementById('player').muted = true")
    await page.evaluate("document.getElementById('player').play()")
    async with asyncio.timeout(10):
        while await page.evaluate("document.getElementById('player').currentTime") <= 0.2:
            await asyncio.sleep(0.1)
    assert await page.evaluate("document.getElementById('player').error") is None
    timeline = page.locator("table.timeline")
    for kind in ("created", "submitted", "completed"):
        await expect(timeline.locator(f"tr.kind-{kind}").first).to_be_visible()
    await expect(page.locator(".summary .badge")).to_have_text("Ready")
    await expect(page.locator("#summary-title")).to_have_text("Ready")  # said once, not twice
    await page.evaluate("document.getElementById('player').pause()")
    await page.screenshot(path=shot("generation.png", page), full_page=True)


async def test_admin_reset_retry_with_cost_and_cancel(site: Site, page: Page) -> None:
    """From the admin view: reset a stuck one, retry a failed one after seeing its cost, cancel."""
    stuck = await site.create("[sim:stuck=40,queue=0] stuck render")
    doomed = await site.create("[sim:stuck=10,queue=0] also stuck")
    failed = await site.create(
        "[sim:fail=moderation_blocked,queue=0,render=0.5] refused", seconds=8
    )
    await site.wait_for(failed["id"], "failed")
    # Each has been seen at the percent it freezes at (under load the worker's look can come
    # seconds after the job got there): after the jump below no look can show a change.
    async with asyncio.timeout(30):
        while (await site.get(stuck["id"]))["progress"] < 40:
            await asyncio.sleep(0.2)
        while (await site.get(doomed["id"]))["progress"] < 10:
            await asyncio.sleep(0.2)
    site.advance(200)  # no progress change for longer than the stuck threshold
    await page.goto(site.origin + "/admin")
    stuck_row = page.locator(f'section:has(#stuck-title) tr[data-generation="{stuck["id"]}"]')
    await expect(stuck_row).to_be_visible()
    await expect(stuck_row.locator(".badge")).to_have_text("Stuck?")
    await expect(page.locator(f'tr[data-generation="{failed["id"]}"]')).to_be_visible()
    await page.screenshot(path=shot("admin.png", page), full_page=True)

    await stuck_row.get_by_role("button", name="Reset").click()
    await expect(page.locator(".notice")).to_contain_text("Reset")
    events = (await site.api.get(f"/api/generations/{stuck['id']}/events")).json()["data"]
    resets = [e for e in events if e["kind"] == "reset"]
    assert len(resets) == 1 and resets[0]["actor"].startswith("dashboard@")

    await (
        page.locator(f'tr[data-generation="{failed["id"]}"]')
        .get_by_role("link", name="Retry")
        .click()
    )
    await expect(page.locator(".cost")).to_contain_text("$0.80")
    await page.get_by_role("button", name="Resubmit for $0.80").click()
    await expect(page.locator(".notice")).to_contain_text("Resubmitted")
    retried = await site.get(failed["id"])
    assert retried["status"] != "failed" and retried["video_id"] != failed["video_id"]

    doomed_row = page.locator(f'section:has(#stuck-title) tr[data-generation="{doomed["id"]}"]')
    await doomed_row.get_by_role("button", name="Cancel").click()
    await expect(page.locator(".notice")).to_contain_text("Cancelled")
    assert page.url.startswith(site.origin + "/admin")
    assert (await site.get(doomed["id"]))["status"] == "cancelled"


async def test_bulk_retry_previews_count_and_cost(site: Site, page: Page) -> None:
    """Bulk retry by filter shows how many and what it costs before doing anything."""
    ids = [
        (await site.create(f"[sim:fail=moderation_blocked,queue=0,render=0.3] no {i}"))["id"]
        for i in range(3)
    ]
    for gid in ids:
        await site.wait_for(gid, "failed")
    await page.goto(site.origin + "/admin/bulk?action=retry&status=failed&code=moderation_blocked")
    await expect(page.locator("h1")).to_have_text("Retry 3 generation(s)?")
    await expect(page.locator(".cost")).to_contain_text("$1.20")
    await expect(page.get_by_role("alert")).to_contain_text(
        "3 of these were refused for their content"
    )
    assert all([(await site.get(gid))["status"] == "failed" for gid in ids])  # preview only
    await page.get_by_role("button", name="Retry 3 for $1.20").click()
    await expect(page.locator(".notice")).to_contain_text("Resubmitted 3")


async def test_actions_without_a_csrf_token_are_refused(site: Site, page: Page) -> None:
    """A POST without (or with a wrong) CSRF token is 403 and changes nothing."""
    g = await site.create("[sim:stuck] keep me")
    await page.goto(site.origin + "/")
    for form in ({}, {"csrf": "forged"}):
        response = await page.request.post(f"{site.origin}/generations/{g['id']}/cancel", form=form)
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "csrf"
    assert (await site.get(g["id"]))["status"] != "cancelled"


async def test_login_is_required_with_a_token_and_the_page_fits_a_phone(
    tmp_path: Path, browser: Browser
) -> None:
    """With REELWATCH_API_TOKEN the dashboard asks for it; the list is readable at phone width."""
    with _site(tmp_path, api_token=TOKEN) as (origin, _sim, _clock):
        context = await browser.new_context(viewport={"width": 390, "height": 844})
        phone = await context.new_page()
        await phone.goto(origin + "/")
        assert phone.url.startswith(origin + "/login")
        await phone.get_by_label("API token").fill("wrong")
        await phone.get_by_role("button", name="Sign in").click()
        await expect(phone.locator(".error")).to_be_visible()
        await phone.get_by_label("API token").fill(TOKEN)
        await phone.get_by_role("button", name="Sign in").click()
        await expect(phone.locator("h1")).to_have_text("Generations")
        async with httpx.AsyncClient(base_url=origin) as api:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            made = await api.post("/api/generations", json={"prompt": "phone"}, headers=auth)
            assert made.status_code == 201
        await phone.reload()
        await expect(phone.locator("tr.row")).to_have_count(1)
        overflow = await phone.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        await context.close()


async def test_the_api_docs_work_offline(site: Site, page: Page) -> None:
    """/docs renders the API's operations with every request to another origin refused: the
    Swagger UI files are served by reelwatch itself."""
    elsewhere: list[str] = []

    async def only_ours(route: Route) -> None:
        if route.request.url.startswith(site.origin):
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort()

    await page.route("**/*", only_ours)
    await page.goto(site.origin + "/docs")
    await expect(page.locator(".opblock").first).to_be_visible(timeout=15_000)
    assert await page.locator(".opblock").count() >= 5
    await expect(page.get_by_text("/api/generations").first).to_be_visible()
    assert elsewhere == []


async def test_status_counts_filter_and_rows_show_times_and_thumbnails(
    site: Site, page: Page
) -> None:
    """Counts per status head the list and filter it; a stored video's row shows its
    thumbnail; created and finished times are relative, exact on hover."""
    done = await site.create("A lighthouse at dusk [sim:queue=0,render=1]")
    await site.create("Still going [sim:queue=0,render=600]")
    await site.wait_for(done["id"], "completed")
    await page.goto(site.origin + "/")
    counts = page.get_by_role("navigation", name="Generations by status")
    await expect(counts.get_by_role("link", name="all 2")).to_be_visible()
    await counts.get_by_role("link", name="completed 1").click()
    await expect(page).to_have_url(re.compile(r"status=completed"))
    await expect(page.locator("tr.row")).to_have_count(1)
    row = page.locator(f'tr[data-generation="{done["id"]}"]')
    thumb = row.locator("img.thumb")
    await expect(thumb).to_be_visible()
    assert await thumb.evaluate("img => img.complete && img.naturalWidth > 0")
    created = row.locator("td.created time").first
    assert (await created.inner_text()).endswith(" ago")
    assert (await created.get_attribute("title") or "").endswith(" UTC")
    await expect(row.locator("td.created")).to_contain_text("finished")
    await expect(row.locator("td.state")).not_to_contain_text("Ready Ready")
    await expect(page.get_by_role("link", name="completed 1")).to_have_attribute(
        "aria-current", "page"
    )


PAGES_TO_FIT = ("/", "/generations/{id}", "/admin", "/charts", "/gallery", "/new", "/no/such/page")


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_every_page_fits_a_phone_and_a_desktop_with_a_long_unbroken_prompt(
    site: Site, browser: Browser, scheme: Literal["light", "dark"]
) -> None:
    """At 360 px and 1280 px, light and dark: no page scrolls sideways, even with a prompt of
    2,000 characters and no space; the dark theme follows the system."""
    g = await site.create("x" * 2000 + " [sim:queue=0,render=1]")
    await site.wait_for(g["id"], "completed")
    for width, height, label in ((360, 800, "phone"), (1280, 900, "desktop")):
        context = await browser.new_context(
            viewport={"width": width, "height": height}, color_scheme=scheme
        )
        view = await context.new_page()
        for path in PAGES_TO_FIT:
            await view.goto(site.origin + path.format(id=g["id"]))
            overflow = await view.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{path} at {width} px ({scheme}) scrolls by {overflow} px"
        background = await view.evaluate(
            "getComputedStyle(document.documentElement).backgroundColor"
        )
        channels = [int(c) for c in re.findall(r"\d+", background)[:3]]
        assert (sum(channels) < 150) == (scheme == "dark"), background
        await view.goto(site.origin + "/")
        await view.screenshot(path=shot(f"list-{label}-{scheme}.png"), full_page=True)
        await view.goto(f"{site.origin}/generations/{g['id']}")
        await view.screenshot(path=shot(f"generation-{label}-{scheme}.png"), full_page=True)
        await context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_the_pages_have_no_serious_accessibility_violations(
    site: Site, browser: Browser, scheme: Literal["light", "dark"]
) -> None:
    """axe-core in the test browser: no serious or critical violation on any page."""
    done = await site.create("An otter [sim:queue=0,render=1]")
    await site.create("[sim:fail=moderation_blocked] refused")
    await site.create("Still going [sim:queue=0,render=600]")
    await site.wait_for(done["id"], "completed")
    axe = Axe()
    for width in (1280, 390):
        context = await browser.new_context(
            viewport={"width": width, "height": 900}, color_scheme=scheme
        )
        view = await context.new_page()
        bulk = "/admin/bulk?action=retry&status=failed"
        for path in (*PAGES_TO_FIT, "/generations/{id}/retry", bulk):
            await view.goto(site.origin + path.format(id=done["id"]))
            results = await axe.run(view)
            serious = [
                f"{v['id']} ({v['impact']}): {v['nodes'][0]['target']}: "
                f"{v['nodes'][0].get('failureSummary')}"
                for v in results.response["violations"]
                if v["impact"] in ("serious", "critical")
            ]
            assert serious == [], f"{path} at {width} px ({scheme}): {serious}"
        await context.close()


async def test_ticked_rows_are_previewed_priced_and_acted_on(site: Site, page: Page) -> None:
    """Rows ticked on the list go to a preview of exactly those rows; a retry leaves out what
    it cannot retry, says so, and warns about prompts refused for their content."""
    busy = [(await site.create(f"Busy {i} [sim:queue=0,render=600]"))["id"] for i in range(2)]
    refused = await site.create("[sim:fail=moderation_blocked,queue=0,render=0.3] no")
    await site.wait_for(refused["id"], "failed")
    await page.goto(site.origin + "/")
    for gid in busy:
        await page.locator(f'tr[data-generation="{gid}"] input[name=ids]').check()
    await page.get_by_label("With the ticked rows").select_option("cancel")
    await page.get_by_role("button", name="Preview…").click()
    await expect(page.locator("h1")).to_have_text("Cancel 2 generation(s)?")
    await page.get_by_role("button", name="Cancel 2").click()
    await expect(page.locator(".notice")).to_contain_text("Cancelled 2")
    assert page.url.startswith(site.origin + "/?")
    assert [(await site.get(gid))["status"] for gid in busy] == ["cancelled", "cancelled"]
    await page.locator(f'tr[data-generation="{refused["id"]}"] input[name=ids]').check()
    await page.locator(f'tr[data-generation="{busy[0]}"] input[name=ids]').check()
    await page.get_by_label("With the ticked rows").select_option("retry")
    await page.get_by_role("button", name="Preview…").click()
    await expect(page.locator("h1")).to_have_text("Retry 1 generation(s)?")
    await expect(page.locator(".hint")).to_contain_text("1 ticked generation(s) left out")
    await expect(page.get_by_role("alert")).to_contain_text("refused for their content")


async def test_a_bulk_retry_of_another_status_is_refused_not_replaced(
    site: Site, page: Page
) -> None:
    """Retry with status pending used to act on failed generations silently; it is a 400."""
    await page.goto(site.origin + "/admin/bulk?action=retry&status=pending")
    await expect(page.locator("h1")).to_have_text("Bad request")
    await expect(page.locator("main")).to_contain_text(
        "retry resubmits failed generations only, not pending"
    )


async def test_new_generation_form_prices_follows_and_closes_with_a_toast(
    site: Site, page: Page
) -> None:
    """From the list: the form shows the estimated cost as you type (and what is wrong), then
    follows the generation live and closes itself with a toast naming it when it is ready."""
    await page.goto(site.origin + "/")
    await page.get_by_role("link", name="New generation").click()
    dialog = page.get_by_role("dialog", name="New generation")
    await expect(dialog).to_be_visible()
    await dialog.get_by_label("Prompt").fill("A kite over dunes [sim:queue=0,render=3]")
    cost = dialog.locator("output[name=cost]")
    await expect(cost).to_have_text("$0.40")
    await dialog.get_by_label("Seconds").fill("5")
    await expect(dialog.locator(".estimate-error")).to_contain_text("seconds: 5 is not one of")
    await dialog.get_by_label("Seconds").fill("8")
    await expect(cost).to_have_text("$0.80")
    await expect(dialog.locator(".estimate-error")).to_have_text("")
    await dialog.get_by_role("button", name="Generate").click()
    bar = dialog.locator(".follow [role=progressbar]")
    await expect(bar).to_be_visible()
    await expect(dialog.locator(".follow-step")).not_to_be_empty()
    await expect(dialog).to_be_hidden(timeout=30_000)
    await expect(page.locator(".toast", has_text="Ready: “A kite over dunes")).to_be_visible()


async def test_the_new_generation_page_works_without_its_script(
    site: Site, browser: Browser
) -> None:
    """With JavaScript off, the form posts and lands on the new generation's page."""
    context = await browser.new_context(java_script_enabled=False)
    view = await context.new_page()
    await view.goto(site.origin + "/new")
    await view.get_by_label("Prompt").fill("No script needed")
    await view.get_by_role("button", name="Generate").click()
    await expect(view.locator("h1")).to_contain_text("Generation")
    await expect(view.locator(".notice")).to_contain_text("Submitted gen_")
    await context.close()


async def test_charts_read_out_the_figures_under_the_pointer(site: Site, page: Page) -> None:
    """The charts have axes and p50/p95 marks, and the bar under the pointer has its figures
    read out beside the chart (not only in a tooltip)."""
    made = [await site.create(f"Charted [sim:queue=0,render={s}]") for s in (1, 2.5)]
    for g in made:
        await site.wait_for(g["id"], "completed")
    await page.goto(site.origin + "/charts")
    render = page.locator("section", has=page.get_by_role("heading", name="Render time"))
    await expect(render.locator("svg.chart .mark-p50")).to_have_count(1)
    counted = page.locator("title", has_text=re.compile(r": [1-9]\d*$"))
    await render.locator("svg.chart rect.fill-working", has=counted).first.hover()
    await expect(render.locator(".readout")).to_have_text(re.compile(r"^[\d.]+-[\d.]+ s: \d+$"))
    hourly = page.locator("section", has=page.get_by_role("heading", name="Generations per hour"))
    await hourly.locator("svg.chart rect.bar-completed").first.hover()
    await expect(hourly.locator(".readout")).to_have_text(re.compile(r"^\d\d:00 completed: \d+$"))


async def test_search_by_id_paging_both_ways_and_the_gallery(site: Site, page: Page) -> None:
    """Search finds a generation by our id and by the provider's; the list pages back and
    forth, newest or oldest first; the gallery shows the stored videos' thumbnails."""
    made = [await site.create(f"Scene {i:02d} [sim:queue=0,render=600]") for i in range(27)]
    stored = await site.create("A stored one [sim:queue=0,render=1]")
    await site.wait_for(stored["id"], "completed")
    target = made[3]
    for needle in (target["id"], target["video_id"]):
        await page.goto(site.origin + "/")
        await page.get_by_label("Search").fill(needle)
        await page.get_by_role("button", name="Filter").click()
        await expect(page.locator("tr.row")).to_have_count(1)
        await expect(page.locator(f'tr[data-generation="{target["id"]}"]')).to_be_visible()
    await page.goto(site.origin + "/")
    first = await page.locator("tr.row").first.get_attribute("data-generation")
    await page.get_by_role("link", name="Older generations").click()
    await expect(page.locator("tr.row")).to_have_count(3)  # 28 in all, 25 a page
    await page.get_by_role("link", name="Newer generations").click()
    await expect(page.locator("tr.row")).to_have_count(25)
    assert await page.locator("tr.row").first.get_attribute("data-generation") == first
    await page.get_by_label("Sort").select_option("oldest first")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("tr.row").first).to_have_attribute("data-generation", made[0]["id"])
    await page.get_by_role("link", name="Newer generations").click()
    await expect(page.locator("tr.row")).to_have_count(3)
    assert await page.locator("tr.row").last.get_attribute("data-generation") == stored["id"]
    await page.get_by_role("link", name="Older generations").click()
    await expect(page.locator("tr.row").first).to_have_attribute("data-generation", made[0]["id"])
    await page.goto(site.origin + "/gallery")
    tile = page.locator(f'.gallery a[href="/generations/{stored["id"]}"]')
    await expect(tile).to_contain_text("A stored one")
    assert await tile.locator("img").evaluate("img => img.complete && img.naturalWidth > 0")
