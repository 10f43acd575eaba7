"""Triggers (run by the triggerer, so a waiting task holds no worker slot)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class LandingFilesTrigger(BaseTrigger):
    """Fires once every file in ``paths`` exists, or at ``deadline`` (ISO 8601, UTC), whichever is first.

    :param paths: absolute paths of the expected landing files.
    :param deadline: when to stop waiting; the event then says ``"status": "deadline"``.
    :param poke_interval: the longest pause between two looks at the folder; the first looks come
        after 1, 2, 4, ... seconds, so a file that is about to land is picked up at once.
    :param root_url: when given, ``paths`` are relative to this ObjectStoragePath URL (``file://``,
        ``s3://``, ...) and are looked up through it (``conn_id``: its Airflow connection).
    """

    def __init__(self, paths: list[str], deadline: str, poke_interval: float = 30.0,
                 root_url: str | None = None, conn_id: str | None = None) -> None:
        super().__init__()
        self.paths = list(paths)
        self.deadline = deadline
        self.poke_interval = float(poke_interval)
        self.root_url = root_url
        self.conn_id = conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("airtrain_airflow.triggers.LandingFilesTrigger",
                {"paths": self.paths, "deadline": self.deadline, "poke_interval": self.poke_interval,
                 "root_url": self.root_url, "conn_id": self.conn_id})

    def _missing(self) -> list[str]:
        if not self.root_url:
            return [p for p in self.paths if not _there(Path(p))]
        from airtrain_airflow.storage import storage_path

        root = storage_path(self.root_url, self.conn_id)
        return [p for p in self.paths if not _there(root / p)]

    async def run(self) -> AsyncIterator[TriggerEvent]:
        deadline = dt.datetime.fromisoformat(self.deadline)
        pause = 1.0
        while True:
            missing = await asyncio.to_thread(self._missing)
            if not missing:
                yield TriggerEvent({"status": "arrived", "paths": self.paths})
                return
            left = (deadline - dt.datetime.now(dt.UTC)).total_seconds()
            if left <= 0:
                yield TriggerEvent({"status": "deadline", "missing": missing})
                return
            if pause >= self.poke_interval:
                self.log.info("waiting for %d landing file(s), e.g. %s, until %s", len(missing), missing[0],
                              self.deadline)
            await asyncio.sleep(min(pause, self.poke_interval, left))
            pause *= 2


def _there(path: Any) -> bool:
    """A landing file is there; a glob pattern (a date in several files) is there when one file matches."""
    if not set("*?[") & set(path.name):
        return path.is_file()
    return path.parent.is_dir() and any(p.is_file() for p in path.parent.glob(path.name))
