"""The raw archive in Blob storage: every Graph page byte for byte, and one manifest per run and day.

Layout:  {feed}/{apiVersion}/{yyyy}/{mm}/{dd}/{runId}/page-00001.json
         {feed}/{apiVersion}/{yyyy}/{mm}/{dd}/{runId}/manifest.json
A page the collector refused (not a page at all, a bad nextLink, or a row the store cannot hold) is kept as
page-00001.rejected.json, for diagnosis, and never replayed; its manifest entry says why it was refused.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass, field

from azure.storage.blob import ContentSettings


@dataclass
class PageEntry:
    name: str
    sha256: str
    bytes: int
    rows: int
    window: str
    rejected: str | None = None  # why the page was refused; None for a page that was stored


@dataclass
class Manifest:
    feed: str
    api_version: str
    day: str
    time_zone: str
    run_id: str
    window: dict
    started: str
    subwindows: list[dict] = field(default_factory=list)
    pages: list[PageEntry] = field(default_factory=list)
    rows: int = 0
    ended: str | None = None
    outcome: str = "running"
    error: str | None = None

    def to_json(self) -> bytes:
        doc = asdict(self)
        doc["apiVersion"] = doc.pop("api_version")
        doc["timeZone"] = doc.pop("time_zone")
        doc["runId"] = doc.pop("run_id")
        return json.dumps(doc, indent=1).encode()


def day_prefix(feed: str, api_version: str, day: dt.date) -> str:
    return f"{feed}/{api_version}/{day:%Y/%m/%d}/"


def run_prefix(feed: str, api_version: str, day: dt.date, run_id: str) -> str:
    return f"{day_prefix(feed, api_version, day)}{run_id}/"


class Archive:
    """Writes and reads the archive through an azure.storage.blob ContainerClient."""

    def __init__(self, container_client):
        self._container = container_client

    def put_page(self, prefix: str, number: int, body: bytes, rejected: bool = False) -> tuple[str, str]:
        """Store one page; return (blob name, sha256). Names are unique per run, so nothing is overwritten."""
        name = f"{prefix}page-{number:05d}{'.rejected' if rejected else ''}.json"
        self._container.upload_blob(name, body, overwrite=False,
                                   content_settings=ContentSettings(content_type="application/json"))
        return name, hashlib.sha256(body).hexdigest()

    def discard(self, name: str) -> None:
        """Delete one blob: a page's copy under its accepted name once the page was refused and kept under its
        rejected one, so that no page-NNNNN.json of a run holds a page that was not stored."""
        self._container.delete_blob(name)

    def put_manifest(self, prefix: str, manifest: Manifest) -> str:
        name = f"{prefix}manifest.json"
        self._container.upload_blob(name, manifest.to_json(), overwrite=True,
                                   content_settings=ContentSettings(content_type="application/json"))
        return name

    def read(self, name: str) -> bytes:
        return self._container.download_blob(name).readall()

    def manifests(self, feed: str, api_version: str, day: dt.date) -> list[dict]:
        """Every run manifest of a day, oldest run first: by start (milliseconds), then run id. A run id has
        whole seconds and a random tail, so two runs started in one second would sort by chance on it alone."""
        names = [b.name for b in self._container.list_blobs(name_starts_with=day_prefix(feed, api_version, day))
                 if b.name.endswith("/manifest.json")]
        found = [json.loads(self.read(n)) for n in names]
        return sorted(found, key=lambda m: (m.get("started") or "", m.get("runId") or ""))
