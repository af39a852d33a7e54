"""The HTTP side: API, cron route, webhooks in, live events, metrics, health (and the dashboard)."""

from reelwatch.web.app import create_app

__all__ = ["create_app"]
