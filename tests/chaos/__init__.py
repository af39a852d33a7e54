"""Chaos scenarios: real worker, server and simulator processes against real PostgreSQL."""
