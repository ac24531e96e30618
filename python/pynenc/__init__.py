"""pynenc-replay: durable, deterministic-replay workflows for Python."""

from __future__ import annotations

__all__: list[str] = []
