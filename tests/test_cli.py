"""The `reelwatch` command as users run it: a subprocess against the simulator over HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reelwatch import simulator
from reelwatch.simulator import samples
from tests.conftest import image_file


@pytest.fixture
def cli_sim() -> Iterator[simulator.RunningSimulator]:
    config = simulator.SimConfig(api_key="sk-cli", queue_s=(0.2, 0.2), render_s=(1.0, 1.0))
    with simulator.running(config) as running:
        yield running


@pytest.fixture
def env(tmp_path: Path, cli_sim: simulator.RunningSimulator) -> dict[str, str]:
    return {
        **os.environ,
        "REELWATCH_DATA_DIR": str(tmp_path / "data"),
        "OPENAI_API_KEY": "sk-cli",
        "OPENAI_BASE_URL": cli_sim.base_url,
        "REELWATCH_POLL_MIN_SECONDS": "0.1",
        "REELWATCH_POLL_MAX_SECONDS": "0.5",
        "REELWATCH_LOG_FORMAT": "json",
    }


def rw(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reelwatch", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def rows(env: dict[str, str]) -> int:
    db = Path(env["REELWATCH_DATA_DIR"]) / "reelwatch.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if "generations" not in tables:
            return 0
        return int(conn.execute("SELECT count(*) FROM generations").fetchone()[0])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["submit", "x", "--model", "sora-9"], "model: unknown model 'sora-9'"),
        (["submit", "x", "--seconds", "5"], "seconds: 5 is not one of"),
        (["submit", "x", "--size", "640x480"], "size: '640x480' is not one of"),
        (["submit", "   "], "prompt: must not be empty"),
        (["submit", "x" * 32001], "prompt: 32001 characters"),
        (["submit", "x", "--input-reference", "/nope.png"], "input_reference: no such file"),
    ],
)
def test_bad_submit_input_is_one_line_and_writes_nothing(
    env: dict[str, str], args: list[str], needle: str
) -> None:
    """Each bad input: exit code 1, one line naming the problem, nothing written."""
    result = rw(env, *args)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and needle in result.stderr
    assert rows(env) == 0
    assert not (Path(env["REELWATCH_DATA_DIR"]) / "videos").exists()


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: p.write_bytes(b""), "not a readable JPEG, PNG or WebP image"),
        (lambda p: p.write_text("not an image"), "not a readable JPEG, PNG or WebP image"),
        (
            lambda p: p.write_bytes(image_file(p).read_bytes()[:200]),
            "not a readable JPEG, PNG or WebP image",
        ),
        (lambda p: image_file(p, kind="GIF"), "a GIF image; it must be a JPEG, PNG or WebP"),
        (lambda p: image_file(p, size=(640, 480)), "the image is 640x480"),
    ],
    ids=["empty", "text", "truncated", "gif", "wrong-size"],
)
def test_an_input_reference_is_checked_by_its_content(
    env: dict[str, str], tmp_path: Path, make: Callable[[Path], object], needle: str
) -> None:
    """Whatever its name says, a reference that is not a whole JPEG, PNG or WebP image of the
    video's size is refused in one line before anything is stored or sent."""
    image = tmp_path / "frame.png"
    make(image)
    result = rw(env, "submit", "from a frame", "--input-reference", str(image))
    assert result.returncode == 1, result.stdout
    assert result.stderr.count("\n") == 1 and needle in result.stderr
    assert rows(env) == 0


def test_a_real_image_named_anything_is_sent_as_what_it_is(
    env: dict[str, str], tmp_path: Path, cli_sim: simulator.RunningSimulator
) -> None:
    """A WebP file named .png is accepted and sent as image/webp."""
    image = image_file(tmp_path / "frame.png", kind="WEBP")
    result = rw(env, "submit", "from a frame", "--input-reference", str(image), "--json")
    assert result.returncode == 0, result.stderr
    job = cli_sim.sim.job(json.loads(result.stdout)["video_id"])
    assert job is not None and job.reference is not None
    assert job.reference.content_type == "image/webp"


def test_veo_on_the_gemini_api_by_the_sdks_own_variables(
    env: dict[str, str], cli_sim: simulator.RunningSimulator
) -> None:
    """`submit --provider veo` set up as a google-genai user would, to the Gemini API's fake."""
    veo = {
        **env,
        "GOOGLE_API_KEY": "sk-cli",
        "GOOGLE_GEMINI_BASE_URL": cli_sim.veo_gemini_url,
    }
    model = "veo-3.1-fast-generate-preview"
    args = ["submit", "--provider", "veo", "--model", model, "--param", "aspect_ratio=9:16"]
    bad = rw(veo, *args, "--param", "duration_seconds=5", "a hummingbird")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1
    assert "duration_seconds must be one of 4, 6, 8" in bad.stderr and rows(veo) == 0
    done = rw(veo, *args, "--param", "duration_seconds=6", "[sim:queue=0,render=1] hi", "--json")
    assert done.returncode == 0, done.stderr
    g = json.loads(done.stdout)
    assert (g["provider"], g["status"], g["size"], g["seconds"]) == (
        "veo",
        "queued",
        "9:16 720p",
        6,
    )
    assert g["step"] == "Queued at Google" and g["estimated_cost_usd"] == 0.9
    waited = rw(veo, *args, "[sim:queue=0,render=1] wait", "--wait", "--json")
    assert waited.returncode == 0, waited.stderr
    stored = json.loads(waited.stdout)
    assert stored["status"] == "completed" and len(stored["assets"]["video"]["sha256"]) == 64
    assert "Finished" in waited.stderr


def test_submit_json_has_the_contract_fields(env: dict[str, str]) -> None:
    """`submit --json` prints a generation with every contract field."""
    result = rw(env, "submit", "a paper boat", "--json")
    assert result.returncode == 0, result.stderr
    g = json.loads(result.stdout)
    expected = {
        "id", "provider", "video_id", "status", "progress", "step", "eta_seconds", "model",
        "seconds", "size", "prompt", "created_at", "submitted_at", "completed_at", "expires_at",
        "error", "attempts", "next_poll_at", "assets",
    }  # fmt: skip
    assert expected <= set(g)
    assert g["status"] in ("queued", "in_progress") and g["video_id"].startswith("video_")
    assert g["created_at"].endswith("Z") and g["model"] == "sora-2" and g["seconds"] == 4


def test_submit_wait_shows_progress_and_finishes(env: dict[str, str]) -> None:
    """`submit --wait` runs until the video is on disk and says so."""
    result = rw(env, "submit", "wait for me", "--wait", "--json")
    assert result.returncode == 0, result.stderr
    g = json.loads(result.stdout)
    assert g["status"] == "completed"
    assert "Finished" in result.stderr and "%" in result.stderr
    video = g["assets"]["video"]
    assert video["content_type"] == "video/mp4" and len(video["sha256"]) == 64


def test_status_list_history_and_worker_once(env: dict[str, str]) -> None:
    """The read commands and one worker cycle, in JSON."""
    g = json.loads(rw(env, "submit", "look at me", "--json").stdout)
    status = json.loads(rw(env, "status", g["id"], "--json").stdout)
    assert status["id"] == g["id"]
    listed = json.loads(rw(env, "list", "--json", "--status", "queued").stdout)
    assert [item["id"] for item in listed["data"]] == [g["id"]]
    time.sleep(1.5)  # the simulator runs in real time here; its job finishes in 1.2 s
    summary = json.loads(rw(env, "worker", "--once").stdout)
    assert set(summary) == {"success", "message", "processed", "results", "duration"}
    assert set(summary["results"]) == {"success", "failed", "timedOut", "errors"}
    assert summary["success"] is True and summary["processed"] >= 0
    history = json.loads(rw(env, "history", g["id"], "--json").stdout)
    assert [e["kind"] for e in history][:2] == ["created", "submitted"]


def test_status_and_history_speak_in_words_and_explain_a_failure(env: dict[str, str]) -> None:
    """`status` of a failed generation explains its error code and what to do (the same text
    as the dashboard's); `history` uses the timeline's words, not the stored kinds or reprs;
    `list` sorts and searches."""
    blocked = json.loads(
        rw(
            env, "submit", "a forbidden [sim:queue=0,render=0.3,fail=moderation_blocked]", "--json"
        ).stdout
    )
    other = json.loads(rw(env, "submit", "a calm lake", "--json").stdout)
    time.sleep(1.0)
    rw(env, "worker", "--once")
    status = rw(env, "status", blocked["id"])
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].startswith(f"{blocked['id']}  failed")
    assert "  prompt: a forbidden [sim:queue=0,render=0.3,fail=moderation_blocked]" in lines
    assert "  Refused for its content (moderation_blocked): " in status.stdout
    assert "  What to do: Reword the prompt" in status.stdout
    history = rw(env, "history", blocked["id"]).stdout
    assert "Sent to the provider" in history and "Failed" in history
    assert "latency_ms" not in history and "answered in" in history
    as_json = json.loads(rw(env, "status", blocked["id"], "--json").stdout)
    assert as_json["submissions"] == 1
    newest = rw(env, "list").stdout.splitlines()
    oldest = rw(env, "list", "--order", "oldest").stdout.splitlines()
    assert [line.split()[0] for line in newest] == [other["id"], blocked["id"]]
    assert [line.split()[0] for line in oldest] == [blocked["id"], other["id"]]
    found = rw(env, "list", "--search", "calm").stdout.splitlines()
    assert [line.split()[0] for line in found] == [other["id"]]
    bad = rw(env, "list", "--order", "sideways")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "order: must be" in bad.stderr


# Runs `reelwatch ARGS` in a fresh interpreter the way the console script does (`cli.main()`),
# then writes which top-level packages that command imported to the file named last.
_IMPORTS_PROBE = """
import json, sys
from reelwatch import cli
report = sys.argv.pop()
sys.argv = ["reelwatch", *sys.argv[1:]]
code = 0
try:
    cli.main()
except SystemExit as exc:
    code = exc.code or 0
with open(report, "w") as handle:
    json.dump({"exit": code, "imported": sorted({m.split(".")[0] for m in sys.modules})}, handle)
"""
SDKS = {"openai", "replicate", "fal_client", "google"}  # google: google-genai, google-auth


def imported_by(env: dict[str, str], tmp_path: Path, *args: str) -> tuple[int, set[str]]:
    """The exit code of `reelwatch ARGS` and the top-level packages it imported."""
    report = tmp_path / "imported.json"
    result = subprocess.run(
        [sys.executable, "-c", _IMPORTS_PROBE, *args, str(report)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert report.exists(), result.stderr
    found = json.loads(report.read_text())
    return found["exit"], set(found["imported"])


def test_help_imports_neither_an_sdk_nor_the_database_layer(
    env: dict[str, str], tmp_path: Path
) -> None:
    """`reelwatch --help` (and importing the CLI) loads no provider SDK, SQLAlchemy or Alembic."""
    code, imported = imported_by(env, tmp_path, "--help")
    assert code == 0
    assert not imported & (SDKS | {"sqlalchemy", "alembic", "prometheus_client"})


def test_read_commands_import_no_sdk_and_never_migrate(env: dict[str, str], tmp_path: Path) -> None:
    """`status`, `list` and `history` read without building a provider (no SDK) or running
    Alembic, and still say whether a configured worker serves the generation."""
    g = json.loads(rw(env, "submit", "read me", "--json").stdout)
    for args in (["status", g["id"], "--json"], ["list"], ["history", g["id"]]):
        code, imported = imported_by(env, tmp_path, *args)
        assert code == 0, args
        assert not imported & (SDKS | {"alembic"}), args
    status = json.loads(rw(env, "status", g["id"], "--json").stdout)
    assert status["served"] is True and status["estimated_cost_usd"] == 0.4


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["list"], "error: no database at "),
        (["status", "gen_x"], "error: no generation gen_x: no database at "),
        (["history", "gen_x", "--json"], "error: no generation gen_x: no database at "),
    ],
    ids=["list", "status", "history"],
)
def test_a_read_without_a_database_says_so_and_creates_nothing(
    env: dict[str, str], args: list[str], needle: str
) -> None:
    """Before anything was submitted, a read command says so in one line, exit code 1, and
    creates neither the database nor its folder."""
    result = rw(env, *args)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(needle)
    assert "nothing has been submitted yet" in result.stderr
    assert not Path(env["REELWATCH_DATA_DIR"]).exists()


def test_a_read_on_an_older_schema_says_to_upgrade_and_leaves_it(env: dict[str, str]) -> None:
    """A read command never migrates: on an older schema it names `reelwatch db upgrade`."""
    assert rw(env, "db", "upgrade").returncode == 0
    db = Path(env["REELWATCH_DATA_DIR"]) / "reelwatch.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0007'")
    result = rw(env, "list")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "run `reelwatch db upgrade`" in result.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0007",)]


def test_a_worker_imports_only_the_sdks_of_configured_providers(
    env: dict[str, str], tmp_path: Path, cli_sim: simulator.RunningSimulator
) -> None:
    """A worker configured for Replicate alone never imports the OpenAI or fal SDK."""
    only_replicate = {
        **{k: v for k, v in env.items() if not k.startswith("OPENAI_")},
        "REELWATCH_PROVIDER": "replicate",
        "REELWATCH_PROVIDER_CONFIG": json.dumps(
            {"replicate": samples.client_config(cli_sim, "sk-cli")["replicate"]}
        ),
    }
    code, imported = imported_by(only_replicate, tmp_path, "worker", "--once")
    assert code == 0
    assert imported & SDKS == {"replicate"}


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"OPENAI_BASE_URL": f"http://127.0.0.1:{_closed_port()}/v1"}, "ConnectError"),
        ({"OPENAI_BASE_URL": "http://reelwatch-nowhere.invalid/v1"}, "ConnectError"),
    ],
    ids=["refused", "unknown-host"],
)
def test_a_submit_the_provider_never_took_fails_loudly_and_stays_pending(
    env: dict[str, str], change: dict[str, str], why: str
) -> None:
    """Nothing reached the provider, or it refused the key: submit says why in one line and
    exits 1; the generation stays pending (not ambiguous, not failed), and a worker cycle
    that cannot send it either counts an error."""
    broken = {**env, **change}
    result = rw(broken, "submit", "never sent", "--json")
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and "was not sent" in result.stderr
    assert why in result.stderr
    g = json.loads(result.stdout)
    assert g["status"] == "pending" and g["video_id"] is None
    time.sleep(1.0)  # past the first backoff (poll min 0.1 s, jittered)
    summary = json.loads(rw(broken, "worker", "--once").stdout)
    assert summary["processed"] == 1 and summary["results"]["errors"] == 1
    assert json.loads(rw(broken, "status", g["id"], "--json").stdout)["status"] == "pending"


def test_a_create_left_unanswered_exits_1_and_says_it_is_looked_for(
    env: dict[str, str], cli_sim: simulator.RunningSimulator
) -> None:
    """The provider took the job but the answer was lost: submit cannot confirm it, says the
    job may exist and will be looked for before anything is sent again, and exits 1."""
    cli_sim.sim.inject("create", "create_then_fail")
    result = rw(env, "submit", "answer lost", "--json")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "did not answer the create" in result.stderr and "looked for" in result.stderr
    g = json.loads(result.stdout)
    assert g["status"] == "pending" and g["video_id"] is None
    assert cli_sim.sim.stats()["creates"] == 1


def test_a_create_refused_for_the_key_fails_at_once_and_is_never_sent_again(
    env: dict[str, str],
) -> None:
    """A 401 on the create is a refusal like any 4xx (reliability scenario 11): the submit
    says so in one line and exits 1; nothing is scheduled, so no worker sends it again."""
    result = rw({**env, "OPENAI_API_KEY": "sk-wrong"}, "submit", "wrong key", "--json")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "Incorrect API key" in result.stderr
    g = json.loads(result.stdout)
    assert g["status"] == "failed" and g["video_id"] is None
    summary = json.loads(rw(env, "worker", "--once").stdout)
    assert summary["processed"] == 0


def test_unknown_id_is_one_line(env: dict[str, str]) -> None:
    """An unknown id is an error naming it, exit code 1."""
    for command in ("status", "history", "reset", "cancel", "retry"):
        result = rw(env, command, "gen_nope")
        assert result.returncode == 1 and "no generation gen_nope" in result.stderr
        assert result.stderr.count("\n") == 1


def test_retry_needs_a_failed_generation_and_confirmation(env: dict[str, str]) -> None:
    """Retry refuses a non-failed one, asks before paying, and resubmits with --yes."""
    ok = json.loads(rw(env, "submit", "fine", "--json").stdout)
    refused = rw(env, "retry", ok["id"], "--yes")
    assert refused.returncode == 1 and "only failed generations" in refused.stderr
    bad = rw(env, "submit", "[sim:fail=moderation_blocked,queue=0,render=0] no", "--wait", "--json")
    assert bad.returncode == 1
    failed = json.loads(bad.stdout)
    assert failed["error"]["code"] == "moderation_blocked"
    unconfirmed = rw(env, "retry", failed["id"])
    assert unconfirmed.returncode == 1 and "--yes" in unconfirmed.stderr
    assert "$0.40" in unconfirmed.stderr
    assert json.loads(rw(env, "status", failed["id"], "--json").stdout)["status"] == "failed"
    retried = rw(env, "retry", failed["id"], "--yes", "--json")
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout)["video_id"] != failed["video_id"]


def test_bad_settings_and_unreachable_database_are_one_line(env: dict[str, str]) -> None:
    """Configuration errors name the variable; an unreachable database names the problem."""
    bad = rw({**env, "REELWATCH_TIMEOUT_MINUTES": "soon"}, "list")
    assert bad.returncode == 1 and bad.stderr.startswith("error: REELWATCH_TIMEOUT_MINUTES:")
    assert bad.stderr.count("\n") == 1
    down = rw({**env, "REELWATCH_DATABASE_URL": "postgresql://u:hunter2@127.0.0.1:1/x"}, "list")
    assert down.returncode == 1 and "cannot reach the database" in down.stderr
    assert "hunter2" not in down.stderr and down.stderr.count("\n") == 1
    nokey = rw({k: v for k, v in env.items() if k != "OPENAI_API_KEY"}, "submit", "x")
    assert nokey.returncode == 1 and "OPENAI_API_KEY" in nokey.stderr


@contextlib.contextmanager
def started_worker(env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[str]]:
    """`reelwatch worker ARGS` as a process, once it has said it started; killed if left."""
    with subprocess.Popen(
        [sys.executable, "-m", "reelwatch", "worker", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stderr is not None
            assert "worker_start" in proc.stderr.readline()
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()


def test_worker_stops_cleanly_on_sigterm(env: dict[str, str]) -> None:
    """SIGTERM: the worker stops claiming, finishes, and exits 0."""
    with started_worker(env) as proc:
        assert proc.stderr is not None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert "worker_stop" in proc.stderr.read()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_worker_serves_its_own_metrics(env: dict[str, str]) -> None:
    """`worker --metrics-port`: what this worker did, in Prometheus form, without the table
    gauges (the server reports those once); a busy port is a one-line error."""
    import httpx

    port = _free_port()
    with started_worker(env, "--metrics-port", str(port)) as proc:
        busy = rw(env, "worker", "--metrics-port", str(port))
        assert busy.returncode == 1 and busy.stderr.count("\n") == 1
        assert f"127.0.0.1:{port}" in busy.stderr
        submitted = rw(env, "submit", "measured", "--json")
        assert submitted.returncode == 0, submitted.stderr
        text = ""
        for _ in range(150):
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            if "reelwatch_download_bytes_total 0.0" not in text:
                break
            time.sleep(0.1)
        samples = {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("reelwatch_")
        }
        assert samples['reelwatch_status_checks_total{outcome="ok"}'] >= 1
        assert samples["reelwatch_download_bytes_total"] > 0
        assert samples["reelwatch_detection_lag_seconds_count"] == 1
        assert not any(name.startswith("reelwatch_generations") for name in samples)
        assert "reelwatch_queue_depth" not in samples
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_db_upgrade(env: dict[str, str]) -> None:
    """`db upgrade` creates the schema and is idempotent."""
    for _ in range(2):
        result = rw(env, "db", "upgrade")
        assert result.returncode == 0, result.stderr
    assert rows(env) == 0


@pytest.mark.slow
def test_demo_runs_to_completion_with_files_on_disk(tmp_path: Path) -> None:
    """`reelwatch demo` with nothing configured: generations complete, files are on disk."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REELWATCH_", "OPENAI_"))}
    result = subprocess.run(
        [sys.executable, "-m", "reelwatch", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    videos = list((tmp_path / "reelwatch-data" / "videos").rglob("video.mp4"))
    assert len(videos) == 5  # two of the seven samples are refused by moderation
    assert "completed" in result.stdout and "failed" in result.stdout
    with sqlite3.connect(tmp_path / "reelwatch-data" / "reelwatch.db") as db:
        ends = db.execute("SELECT provider, status FROM generations").fetchall()
        limits = db.execute("SELECT data FROM events WHERE kind = 'rate_limited'").fetchall()
    completed = {p for p, status in ends if status == "completed"}
    assert completed == {"openai", "replicate", "fal", "veo"}
    assert sorted(p for p, status in ends if status == "failed") == ["openai", "veo"]
    # One 429 from the provider (the sample that asks for it); a generation of the same
    # provider stepping during the pause it set is held too, recorded as a local wait.
    answered = [json.loads(data) for (data,) in limits]
    assert sum(1 for d in answered if not d["local"]) == 1, answered


def test_serve_refuses_a_public_address_without_a_token(env: dict[str, str]) -> None:
    """Binding beyond loopback needs REELWATCH_API_TOKEN."""
    result = rw(env, "serve", "--host", "0.0.0.0", "--port", "0")
    assert result.returncode == 1 and "REELWATCH_API_TOKEN" in result.stderr
    assert result.stderr.count("\n") == 1


def test_serve_answers_and_stops_on_sigterm(env: dict[str, str]) -> None:
    """`serve` starts the API with the worker, answers /readyz, and exits cleanly on SIGTERM."""
    import httpx

    with subprocess.Popen(
        [sys.executable, "-m", "reelwatch", "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            assert line.startswith("reelwatch on http://127.0.0.1:"), line
            origin = line.split(" on ", 1)[1].strip().rstrip("/")
            for _ in range(100):
                try:
                    if httpx.get(origin + "/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            created = httpx.post(origin + "/api/generations", json={"prompt": "served"}, timeout=10)
            assert created.status_code == 201
            proc.send_signal(signal.SIGTERM)
            # uvicorn shuts the app down gracefully, then re-raises the signal it caught, so
            # the process ends "killed by SIGTERM" as supervisors expect.
            assert proc.wait(timeout=15) == -signal.SIGTERM
            assert "worker_stop" in proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()


def test_the_worker_waits_for_an_unreachable_database_and_stops_on_sigterm(
    env: dict[str, str],
) -> None:
    """`reelwatch worker` with its database down keeps trying, one line per try, until stopped."""
    down = {**env, "REELWATCH_DATABASE_URL": "postgresql://u:hunter2@127.0.0.1:1/x"}
    with subprocess.Popen(
        [sys.executable, "-m", "reelwatch", "worker"],
        env=down,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        second = proc.stderr.readline()  # a second try: it did not give up
        assert "db_wait" in first and "db_wait" in second and proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        assert "hunter2" not in first + second + proc.stderr.read()


def test_the_worker_exits_with_one_line_when_the_schema_is_wrong(env: dict[str, str]) -> None:
    """An error no restart can fix (a table of this version missing) ends the worker: one line."""
    assert rw(env, "db", "upgrade").returncode == 0
    db = Path(env["REELWATCH_DATA_DIR"]) / "reelwatch.db"
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE provider_state")
    result = rw(env, "worker", timeout=30)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: the database cannot be used")
    assert "Traceback" not in result.stderr


def test_simulate_bad_profile_is_one_line(env: dict[str, str]) -> None:
    result = rw(env, "simulate", "--progress", "sideways", "--port", "0")
    assert result.returncode == 2
    assert "progress must be one of linear, lumps, easeout, stall, none" in result.stderr


@pytest.mark.parametrize("command", ["simulate", "serve"])
def test_a_busy_port_is_one_line(env: dict[str, str], command: str) -> None:
    """Another program on the port: one line naming it, exit 1, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = rw(env, command, "--port", str(port), timeout=30)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert "Traceback" not in result.stderr


def test_simulate_serves_the_chosen_progress_profile(env: dict[str, str]) -> None:
    """`--progress none` with a spread: the job renders showing 0 %, then completes."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ["simulate", "--port", str(port), "--progress", "none", "--render-spread", "0.1"]
    args += ["--queue-seconds", "0", "--render-seconds", "1.5", "--queue-per-active", "0.1"]
    with subprocess.Popen(
        [sys.executable, "-m", "reelwatch", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as proc:
        try:
            origin = f"http://127.0.0.1:{port}"
            for _ in range(100):
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(origin + "/_sim/health", timeout=1).status_code == 200:
                        break
                time.sleep(0.1)
            auth = {"Authorization": "Bearer sk-any"}
            video = httpx.post(
                origin + "/v1/videos", json={"prompt": "p", "seconds": "8"}, headers=auth
            ).json()
            seen: list[tuple[str, int]] = []
            for _ in range(100):
                got = httpx.get(f"{origin}/v1/videos/{video['id']}", headers=auth).json()
                seen.append((got["status"], got["progress"]))
                if got["status"] == "completed":
                    break
                time.sleep(0.05)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert seen[-1] == ("completed", 100)
    assert ("in_progress", 0) in seen
    assert all(p == 0 for status, p in seen if status == "in_progress")
