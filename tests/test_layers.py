"""Provider knowledge stays in providers/ (and the simulator): the rest of the code reads an
adapter's `Capabilities`, never a provider's name. import-linter (`make lint`) keeps the import
layers; this keeps the names, which no import contract can see."""

from __future__ import annotations

import re
from pathlib import Path

import reelwatch
from reelwatch import providers

PACKAGE = Path(reelwatch.__file__).parent
# The compatible front speaks OpenAI's Videos API by definition (its shapes, not a provider).
ALLOWED = (
    PACKAGE / "providers",
    PACKAGE / "simulator",
    PACKAGE / "front.py",
    PACKAGE / "web" / "videos.py",
)
# The cron route's path is the original monitor's, which schedulers call (../shared/CONTRACT.md).
CONTRACT_NAMES = ("/api/cron/poll-sora-status",)
WORDS = re.compile(
    r"\b(" + "|".join([*providers.NAMES, "sora", "veo", "vertex", "runway"]) + r")\b",
    re.IGNORECASE,
)


def named_providers(text: str) -> list[str]:
    for name in CONTRACT_NAMES:
        text = text.replace(name, "")
    return WORDS.findall(text)


def test_no_module_outside_providers_names_a_provider() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): found
        for path in sorted(PACKAGE.rglob("*"))
        if path.suffix in (".py", ".html", ".js", ".css")
        and not any(path.is_relative_to(root) for root in ALLOWED)
        and (found := named_providers(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


def test_the_check_sees_a_provider_name() -> None:
    assert named_providers("if g.provider == 'fal':") == ["fal"]
    assert named_providers("# Replicate's logs") == ["Replicate"]
    assert named_providers('@router.get("/api/cron/poll-sora-status")') == []
