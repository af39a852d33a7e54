"""The official `openai` SDK's own video tests (tests/api_resources/test_videos.py from the
sdist of the installed version), run against `reelwatch serve` as they run against the SDK's
mock server.

Only the cases that make their own objects are run: creates, lists, the content download
(which the SDK's test answers itself) and the client-side checks. The others name objects that
exist only on OpenAI's mock (`video_123`, `char_123`) or use what no provider here offers
(characters, edit, extend); and `create` with all params sends `input_reference=b"Example
data"`, which is not an image: reelwatch refuses it with a 400, as it refuses any non-image
(checked at the end).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import openai
import pytest

from reelwatch import serving, settings, simulator
from reelwatch.simulator import samples
from reelwatch.web.app import create_app

SDK_KEY = "My API Key"  # what the SDK's own conftest sends
SELF_CONTAINED = (
    "(create or list or path_params or download_content or signature)"
    " and not all_params and not character"
)
CACHE = Path(os.environ.get("REELWATCH_TEST_CACHE", Path.home() / ".cache" / "reelwatch-tests"))


def _sdk_tests() -> Path:
    """The installed SDK's sdist, unpacked (downloaded from the package index once)."""
    version = metadata.version("openai")
    root = CACHE / f"openai-{version}"
    if (root / "tests" / "api_resources" / "test_videos.py").exists():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", f"openai=={version}", "--no-binary", ":all:",
         "--no-deps", "--quiet", "-d", str(CACHE)],
        check=True,
        timeout=300,
    )  # fmt: skip
    with tarfile.open(CACHE / f"openai-{version}.tar.gz") as archive:
        archive.extractall(CACHE, filter="data")
    return root


@pytest.fixture
def reelwatch_origin(tmp_path: Path) -> Iterator[str]:
    config = simulator.SimConfig(api_key="sk-sim", queue_s=(0.2, 0.2), render_s=(60.0, 60.0))
    with simulator.running(config) as sim:
        values = {
            "data_dir": tmp_path / "data",
            "provider_config": samples.client_config(sim, "sk-sim"),
            "api_token": SDK_KEY,
            "client_create_rate": None,
        }
        app = create_app(settings.load(**values))
        with serving.in_thread(app, probe="/healthz", name="reelwatch-sdk-tests") as origin:
            yield origin


@pytest.mark.slow
def test_the_sdks_own_video_tests_pass_against_reelwatch(reelwatch_origin: str) -> None:
    root = _sdk_tests()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "tests/api_resources/test_videos.py", "-k", SELF_CONTAINED],
        cwd=root,
        env={**os.environ, "TEST_API_BASE_URL": reelwatch_origin + "/v1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 40, summary  # creates, lists, downloads, in sync, async, strict and loose


def test_the_all_params_create_is_refused_for_its_bytes_not_an_image(reelwatch_origin: str) -> None:
    with (
        openai.OpenAI(base_url=reelwatch_origin + "/v1", api_key=SDK_KEY, max_retries=0) as sdk,
        pytest.raises(openai.BadRequestError, match="input_reference"),
    ):
        sdk.videos.create(
            prompt="x",
            input_reference=b"Example data",
            model="sora-2",
            seconds="4",
            size="720x1280",
        )
