"""Settings: every contract name is read; bad values fail with one line naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from reelwatch import exceptions, providers, settings


def test_defaults_are_the_contracts() -> None:
    """With nothing set: SQLite and videos in ./reelwatch-data, 15 minutes, the OpenAI URL."""
    s = settings.load()
    data = Path("reelwatch-data").resolve()
    assert s.database_url == f"sqlite:///{data / 'reelwatch.db'}"
    assert s.storage_url == (data / "videos").as_uri()
    assert s.timeout_seconds == 900
    openai = providers.config("openai", s)
    assert openai.base_url == "https://api.openai.com/v1"
    assert s.api_token is None and s.cron_secret is None and openai.missing == "OPENAI_API_KEY"
    assert providers.verifier("openai", s) is None


def test_every_contract_variable_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each name in CONTRACT.md lands in its setting."""
    env = {
        "REELWATCH_DATA_DIR": str(tmp_path / "d"),
        "REELWATCH_DATABASE_URL": "postgresql://u@h/db",
        "REELWATCH_STORAGE_URL": f"file://{tmp_path}/assets",
        "REELWATCH_TIMEOUT_MINUTES": "0.25",
        "REELWATCH_API_TOKEN": "tok",
        "OPENAI_API_KEY": "sk-x",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1/",
        "OPENAI_WEBHOOK_SECRET": "whsec_YWJj",
        "CRON_SECRET": "cron",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = settings.load()
    assert s.data_dir == tmp_path / "d"
    assert s.database_url == "postgresql://u@h/db"
    assert s.storage_url == f"file://{tmp_path}/assets"
    assert s.timeout_seconds == 15.0
    openai = providers.config("openai", s)
    assert (s.api_token, openai.missing, s.cron_secret) == ("tok", None, "cron")
    assert openai.base_url == "http://127.0.0.1:9/v1"
    assert providers.verifier("openai", s) is not None


def test_dotenv_in_the_working_folder_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `.env` file in the working folder is read."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("REELWATCH_TIMEOUT_MINUTES=2\nCRON_SECRET=from-file\n")
    s = settings.load()
    assert s.timeout_minutes == 2 and s.cron_secret == "from-file"


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("REELWATCH_TIMEOUT_MINUTES", "soon", "REELWATCH_TIMEOUT_MINUTES:"),
        ("REELWATCH_TIMEOUT_MINUTES", "0", "REELWATCH_TIMEOUT_MINUTES:"),
        ("REELWATCH_TIMEOUT_MINUTES", "-1", "REELWATCH_TIMEOUT_MINUTES:"),
        ("REELWATCH_DATABASE_URL", "mysql://x", "REELWATCH_DATABASE_URL:"),
        ("REELWATCH_STORAGE_URL", "gs://bucket", "REELWATCH_STORAGE_URL:"),
        ("REELWATCH_STORAGE_URL", "s3://", "REELWATCH_STORAGE_URL:"),
        ("OPENAI_BASE_URL", "ftp://x", "OPENAI_BASE_URL:"),
        ("REELWATCH_CONCURRENCY", "0", "REELWATCH_CONCURRENCY:"),
        ("REELWATCH_DOWNLOAD_VARIANTS", "thumbnail", "REELWATCH_DOWNLOAD_VARIANTS:"),
        ("REELWATCH_POLL_MIN_SECONDS", "100", "REELWATCH_POLL_MIN_SECONDS"),
    ],
)
def test_bad_values_fail_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, needle: str
) -> None:
    """A bad value raises ConfigError whose single line starts with the variable's name."""
    monkeypatch.setenv(name, value)
    with pytest.raises(exceptions.ConfigError) as caught:
        load_everything()
    message = str(caught.value)
    assert needle in message and "\n" not in message


def load_everything() -> None:
    """The core settings, then every provider's (each reads its own variables)."""
    loaded = settings.load()
    for provider in providers.NAMES:
        providers.config(provider, loaded)
