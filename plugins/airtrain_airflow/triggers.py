"""Triggers (run by the triggerer, so a waiting task holds no worker slot)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class LandingFilesTrigger(BaseTrigger):
    """Fires once every file in ``paths`` is complete (exists; with a ready marker, also the marker),
    or at ``deadline`` (ISO 8601, UTC), whichever is first.

    :param paths: absolute paths of the expected landing files.
    :param deadline: when to stop waiting; the event then says ``"status": "deadline"``.
    :param poke_interval: the longest pause between two looks at the folder; the first looks come
        after 1, 2, 4, ... seconds, so a file that is about to land is picked up at once.
    :param root_url: when given, ``paths`` are relative to this ObjectStoragePath URL (``file://``,
        ``s3://``, ...) and are looked up through it (``conn_id``: its Airflow connection).
    :param markers: ``source.ready_marker``: path → the path of its ready marker; such a file counts
        only once it is complete (:func:`airtrain.data.ingest.file_incomplete`: marker there, size/sha256 match).
    :param late_until: the sensor's deadlines of late deliveries in progress (path → ISO time), echoed
        back in every event so the resumed sensor keeps them.
    """

    def __init__(self, paths: list[str], deadline: str, poke_interval: float = 30.0,
                 root_url: str | None = None, conn_id: str | None = None,
                 markers: dict[str, str] | None = None, late_until: dict[str, str] | None = None) -> None:
        super().__init__()
        self.paths = list(paths)
        self.deadline = deadline
        self.poke_interval = float(poke_interval)
        self.root_url = root_url
        self.conn_id = conn_id
        self.markers = dict(markers or {})
        self.late_until = dict(late_until or {})

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("airtrain_airflow.triggers.LandingFilesTrigger",
                {"paths": self.paths, "deadline": self.deadline, "poke_interval": self.poke_interval,
                 "root_url": self.root_url, "conn_id": self.conn_id, "markers": self.markers or None,
                 "late_until": self.late_until or None})

    def _missing(self) -> list[str]:
        from airtrain.data.ingest import file_incomplete

        if not self.root_url:
            def at(p: str) -> Any:
                return Path(p)
        else:
            from airtrain_airflow.storage import storage_path

            root = storage_path(self.root_url, self.conn_id)

            def at(p: str) -> Any:
                return root / p
        return [p for p in self.paths
                if file_incomplete(at(p), at(self.markers[p]) if p in self.markers else None) is not None]

    def _echo(self) -> dict[str, Any]:
        # the sensor's state goes back in the event too: a resumed task gets the defer kwargs merged with
        # the event from the triggerer, but not from every runner (dag.test() passes the event alone)
        return {"late_until": self.late_until} if self.late_until else {}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        deadline = dt.datetime.fromisoformat(self.deadline)
        pause = 1.0
        while True:
            missing = await asyncio.to_thread(self._missing)
            if not missing:
                yield TriggerEvent({"status": "arrived", "paths": self.paths, **self._echo()})
                return
            left = (deadline - dt.datetime.now(dt.UTC)).total_seconds()
            if left <= 0:
                yield TriggerEvent({"status": "deadline", "missing": missing, **self._echo()})
                return
            if pause >= self.poke_interval:
                self.log.info("waiting for %d landing file(s), e.g. %s, until %s", len(missing), missing[0],
                              self.deadline)
            await asyncio.sleep(min(pause, self.poke_interval, left))
            pause *= 2
