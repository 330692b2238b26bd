"""Sources by their config type: an explicit list, no import magic."""

from __future__ import annotations

from connectors.base import Source
from connectors.file_replay import FileReplay
from monitor.config import FileSourceConfig, SourceConfig


def make_source(config: SourceConfig) -> Source:
    if isinstance(config, FileSourceConfig):
        return FileReplay(
            config.name, config.predictions, config.outcomes, config.format, config.speed
        )
    raise ValueError(f"unknown source type {type(config).__name__}; valid: file")
