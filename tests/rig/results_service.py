"""A double of GitHub's results service on 127.0.0.1: artifacts and caches, with blob storage.

What the real actions' clients call (read from their dist/ code, @actions/artifact 2+ and
@actions/cache 4+ with ``ACTIONS_CACHE_SERVICE_V2``), as JSON twirp at ``ACTIONS_RESULTS_URL``
with the job's ``ACTIONS_RUNTIME_TOKEN`` (a JWT whose ``scp`` claim names the run's and the
job's backend ids) as bearer token:

- ``ArtifactService``: ``CreateArtifact`` (409 when the run has the name already, as GitHub),
  ``FinalizeArtifact``, ``ListArtifacts`` (``name_filter``/``id_filter``), ``GetSignedArtifactURL``
  and ``DeleteArtifact`` (upload-artifact's ``overwrite``); artifacts belong to one run;
- ``CacheService``: ``GetCacheEntryDownloadURL`` (exact key, then the key and each restore key
  as prefixes, newest first, same version only), ``CreateCacheEntry`` (refused when the
  key and version exist) and ``FinalizeCacheEntryUploadRequest``; caches outlive runs
  (one repository; GitHub's per-branch scoping is not modelled);
- blob storage at signed URLs, the Azure way the SDK uploads (``PUT ?comp=block`` then
  ``?comp=blocklist``, or one ``PUT`` of a ``BlockBlob``) and plain ``GET`` downloads.

Every call is recorded (``calls``) so tests can count uploads, downloads and lookups.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .local_server import LocalHTTPServer

TWIRP = "/twirp/github.actions.results.api.v1."


@dataclass(frozen=True)
class Call:
    service: str  # ArtifactService, CacheService or blob
    method: str  # CreateArtifact..., or PUT/GET for blobs
    subject: str  # artifact name, cache key, or blob path
    status: int


@dataclass
class Artifact:
    id: int
    run: str
    job: str
    name: str
    blob: str
    size: int = 0
    digest: str = ""
    finalized: bool = False
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    expires_at: str = ""  # set when the upload asked for retention-days


@dataclass
class CacheEntry:
    id: int
    key: str
    version: str
    blob: str
    size: int = 0
    finalized: bool = False


class TwirpError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def _backend_ids(authorization: str) -> tuple[str, str]:
    """(run, job) backend ids from the bearer JWT's ``scp`` claim."""
    token = authorization.removeprefix("Bearer ").strip()
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        raise TwirpError(401, "unauthenticated", "bad runtime token") from None
    for scope in str(claims.get("scp", "")).split():
        parts = scope.split(":")
        if parts[0] == "Actions.Results" and len(parts) == 3:
            return parts[1], parts[2]
    raise TwirpError(401, "unauthenticated", "the runtime token has no Actions.Results scope")


class ResultsService:
    """Artifacts and caches; ``url`` goes into ACTIONS_RESULTS_URL."""

    def __init__(self, storage: Path) -> None:
        self.storage = storage
        storage.mkdir(parents=True, exist_ok=True)
        self.artifacts: dict[int, Artifact] = {}
        self.caches: dict[int, CacheEntry] = {}
        self.calls: list[Call] = []
        self._blocks: dict[str, dict[str, bytes]] = {}
        self._content_types: dict[str, str] = {}
        self._ids = 0
        self._secret = secrets.token_bytes(16)
        self._lock = threading.Lock()
        self._server: LocalHTTPServer | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> ResultsService:
        owner = self

        class Handler(_Handler):
            service = owner

        self._server = LocalHTTPServer(Handler)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> ResultsService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.port}/"

    # -- what tests read ---------------------------------------------------------------
    def artifact_names(self, run: str | None = None) -> list[str]:
        return sorted(
            a.name for a in self.artifacts.values() if a.finalized and (run is None or a.run == run)
        )

    def cache_keys(self) -> list[str]:
        return [c.key for c in sorted(self.caches.values(), key=lambda c: c.id) if c.finalized]

    def artifact_zip(self, name: str) -> Path:
        """The stored zip of the finalized artifact ``name`` (the newest one of that name)."""
        found = [a for a in self.artifacts.values() if a.finalized and a.name == name]
        if not found:
            raise KeyError(f"no artifact {name!r}: {self.artifact_names()}")
        return self.blob_path(max(found, key=lambda a: a.id).blob)

    def artifact(self, name: str) -> Artifact:
        return max(
            (a for a in self.artifacts.values() if a.finalized and a.name == name),
            key=lambda a: a.id,
        )

    def cache_blob(self, key: str) -> Path:
        """The stored archive (tar, zstd- or gzip-compressed) of the cache entry ``key``."""
        found = [c for c in self.caches.values() if c.finalized and c.key == key]
        if not found:
            raise KeyError(f"no cache entry {key!r}: {self.cache_keys()}")
        return self.blob_path(found[-1].blob)

    def count(self, service: str, method: str) -> int:
        return sum(1 for c in self.calls if c.service == service and c.method == method)

    # -- blobs -------------------------------------------------------------------------
    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def _sign(self, blob: str) -> str:
        return hmac.new(self._secret, blob.encode(), hashlib.sha256).hexdigest()[:32]

    def signed_url(self, blob: str) -> str:
        return f"{self.url}{blob}?sig={self._sign(blob)}&sv=2024-01-01"

    def blob_path(self, blob: str) -> Path:
        return self.storage / hashlib.sha256(blob.encode()).hexdigest()

    def check_signature(self, blob: str, sig: str) -> None:
        if not hmac.compare_digest(self._sign(blob), sig):
            raise TwirpError(403, "permission_denied", "bad signature")

    # -- artifact service --------------------------------------------------------------
    def artifact_call(
        self, method: str, body: dict[str, Any], ids: tuple[str, str]
    ) -> dict[str, Any]:
        run, job = ids
        if body.get("workflow_run_backend_id", run) != run:
            raise TwirpError(403, "permission_denied", "the token belongs to another run")
        name = str(body.get("name", ""))
        with self._lock:
            current = [a for a in self.artifacts.values() if a.run == run]
            if method == "CreateArtifact":
                if any(a.name == name for a in current):
                    raise TwirpError(
                        409,
                        "already_exists",
                        f"an artifact with name {name!r} already exists on the workflow run",
                    )
                artifact_id = self._next_id()
                blob = f"blob/artifacts/{run}/{artifact_id}.zip"
                self.artifacts[artifact_id] = Artifact(artifact_id, run, job, name, blob)
                self.artifacts[artifact_id].expires_at = str(body.get("expires_at") or "")
                return {"ok": True, "signed_upload_url": self.signed_url(blob)}
            if method == "FinalizeArtifact":
                found = next((a for a in current if a.name == name and not a.finalized), None)
                if found is None:
                    raise TwirpError(404, "not_found", f"no artifact {name!r} being uploaded")
                found.size, found.finalized = int(body.get("size", 0)), True
                found.digest = str(body.get("hash") or "")
                return {"ok": True, "artifact_id": str(found.id)}
            if method == "ListArtifacts":
                wanted = body.get("name_filter")
                wanted_id = body.get("id_filter")
                items = [
                    a for a in current
                    if a.finalized and (wanted is None or a.name == wanted)
                    and (wanted_id is None or str(a.id) == str(wanted_id))
                ]  # fmt: skip
                return {"artifacts": [self._artifact_json(a) for a in items]}
            if method == "GetSignedArtifactURL":
                found = next((a for a in current if a.name == name and a.finalized), None)
                if found is None:
                    raise TwirpError(404, "not_found", f"artifact {name!r} not found")
                return {"signed_url": self.signed_url(found.blob)}
            if method == "DeleteArtifact":
                found = next((a for a in current if a.name == name), None)
                if found is None:
                    raise TwirpError(404, "not_found", f"artifact {name!r} not found")
                del self.artifacts[found.id]
                return {"ok": True, "artifact_id": str(found.id)}
        raise TwirpError(404, "bad_route", f"no method ArtifactService/{method}")

    @staticmethod
    def _artifact_json(a: Artifact) -> dict[str, Any]:
        item: dict[str, Any] = {
            "workflow_run_backend_id": a.run,
            "workflow_job_run_backend_id": a.job,
            "database_id": str(a.id),
            "name": a.name,
            "size": str(a.size),
            "created_at": a.created.replace("+00:00", "Z"),
        }
        if a.digest:
            item["digest"] = a.digest
        return item

    # -- cache service -----------------------------------------------------------------
    def cache_call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        key, version = str(body.get("key", "")), str(body.get("version", ""))
        with self._lock:
            same_version = [c for c in self.caches.values() if c.version == version]
            if method == "GetCacheEntryDownloadURL":
                found = self._lookup(
                    key, [str(k) for k in body.get("restore_keys") or []], same_version
                )
                if found is None:
                    return {"ok": False}
                return {
                    "ok": True,
                    "signed_download_url": self.signed_url(found.blob),
                    "matched_key": found.key,
                }
            if method == "CreateCacheEntry":
                if any(c.key == key for c in same_version):
                    raise TwirpError(409, "already_exists", f"cache entry {key!r} already exists")
                entry_id = self._next_id()
                blob = f"blob/caches/{entry_id}"
                self.caches[entry_id] = CacheEntry(entry_id, key, version, blob)
                return {"ok": True, "signed_upload_url": self.signed_url(blob)}
            if method == "FinalizeCacheEntryUpload":
                found = next((c for c in same_version if c.key == key and not c.finalized), None)
                if found is None:
                    raise TwirpError(404, "not_found", f"no cache entry {key!r} being uploaded")
                found.size, found.finalized = int(body.get("size_bytes", 0)), True
                return {"ok": True, "entry_id": str(found.id)}
        raise TwirpError(404, "bad_route", f"no method CacheService/{method}")

    @staticmethod
    def _lookup(key: str, restore_keys: list[str], entries: list[CacheEntry]) -> CacheEntry | None:
        done = sorted((c for c in entries if c.finalized), key=lambda c: c.id, reverse=True)
        exact = next((c for c in done if c.key == key), None)
        if exact is not None:
            return exact
        for prefix in [key, *restore_keys]:
            found = next((c for c in done if prefix and c.key.startswith(prefix)), None)
            if found is not None:
                return found
        return None

    # -- blob operations ---------------------------------------------------------------
    def put_blob(self, blob: str, query: dict[str, str], data: bytes, content_type: str) -> int:
        with self._lock:
            comp = query.get("comp", "")
            if comp == "block":
                self._blocks.setdefault(blob, {})[query["blockid"]] = data
                return 201
            if comp == "blocklist":
                ids = re.findall(rb"<(?:Latest|Committed|Uncommitted)>([^<]*)</", data)
                blocks = self._blocks.pop(blob, {})
                try:
                    content = b"".join(blocks[i.decode()] for i in ids)
                except KeyError:
                    return 400
                self.blob_path(blob).write_bytes(content)
                if content_type:
                    self._content_types[blob] = content_type
                return 201
            if comp:
                return 201  # properties, metadata: accepted and ignored
            self.blob_path(blob).write_bytes(data)
            if content_type:
                self._content_types[blob] = content_type
            return 201

    def content_type(self, blob: str) -> str:
        return self._content_types.get(blob, "application/octet-stream")


class _Handler(BaseHTTPRequestHandler):
    service: ResultsService
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("x-ms-request-id", secrets.token_hex(8))
        self.send_header("x-ms-version", "2024-01-01")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), {"Content-Type": "application/json"})

    def do_POST(self) -> None:
        split = urlsplit(self.path)
        body = self._body()
        service_name = method = ""
        status = 200
        subject = ""
        try:
            if not split.path.startswith(TWIRP):
                raise TwirpError(404, "bad_route", f"no route {split.path}")
            service_name, _, method = split.path.removeprefix(TWIRP).partition("/")
            ids = _backend_ids(self.headers.get("Authorization", ""))
            request = json.loads(body or b"{}")
            subject = str(request.get("name") or request.get("key") or "")
            if service_name == "ArtifactService":
                answer = self.service.artifact_call(method, request, ids)
            elif service_name == "CacheService":
                answer = self.service.cache_call(method, request)
            else:
                raise TwirpError(404, "bad_route", f"no service {service_name}")
            self._json(200, answer)
        except TwirpError as exc:
            status = exc.status
            self._json(exc.status, {"code": exc.code, "msg": str(exc)})
        except ValueError as exc:
            status = 400
            self._json(400, {"code": "malformed", "msg": str(exc)})
        self.service.calls.append(Call(service_name, method, subject, status))

    def _blob(self) -> tuple[str, dict[str, str]]:
        split = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(split.query).items()}
        blob = split.path.lstrip("/")
        self.service.check_signature(blob, query.get("sig", ""))
        return blob, query

    def do_PUT(self) -> None:
        data = self._body()
        try:
            blob, query = self._blob()
        except TwirpError as exc:
            self._send(exc.status, b"")
            return
        status = self.service.put_blob(
            blob, query, data, self.headers.get("x-ms-blob-content-type", "")
        )
        self.service.calls.append(Call("blob", "PUT", blob, status))
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
        self._send(status, b"", {"ETag": '"0x1"', "Content-MD5": md5,
                                 "Last-Modified": "Wed, 02 Dec 2026 00:00:00 GMT",
                                 "x-ms-request-server-encrypted": "true"})  # fmt: skip

    def do_GET(self) -> None:
        try:
            blob, _ = self._blob()
        except TwirpError as exc:
            self._send(exc.status, b"")
            return
        path = self.service.blob_path(blob)
        if not path.is_file():
            self.service.calls.append(Call("blob", self.command, blob, 404))
            self._send(404, b"")
            return
        data = path.read_bytes()
        self.service.calls.append(Call("blob", self.command, blob, 200))
        name = blob.rsplit("/", 1)[-1]
        self._send(200, data, {
            "Content-Type": self.service.content_type(blob),
            "Content-Disposition": f'attachment; filename="{name}"',
            "Last-Modified": "Wed, 02 Dec 2026 00:00:00 GMT", "ETag": '"0x1"',
            "x-ms-blob-type": "BlockBlob",
        })  # fmt: skip

    do_HEAD = do_GET
