"""A loopback fake Hugging Face Hub for tests, driven by the real huggingface_hub client.

It implements the wire contract huggingface_hub 2.4 (and the 1.x in the lerobot oracle) uses
for repos, commits, refs, trees and downloads, including Xet uploads through hf_xet's
``local://`` CAS: the client writes xorbs and shards to a directory we name, and a commit's
``lfsFile`` sha256 is found again by reading the shard files (published MDB shard format).

State lives in memory under one lock; file contents live on disk under ``root``. The server
binds 127.0.0.1 only, refuses non-loopback peers, caps request bodies, and times out idle
connections so teardown never hangs.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import os
import secrets
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

WRITE_TOKEN = "hf_fakehub_write_token_0123456789"
READ_TOKEN = "hf_fakehub_read_token_0123456789"
USER = "tester"

MAX_BODY_BYTES = 1 << 30
SOCKET_TIMEOUT_S = 60.0
LFS_EXTENSIONS = {
    ".parquet",
    ".mp4",
    ".arrow",
    ".bin",
    ".safetensors",
    ".png",
    ".jpg",
    ".npy",
    ".zip",
}
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
TYPE_BY_PLURAL = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


class HubHTTPError(Exception):
    """Raised by route handlers; becomes a JSON error response."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


@dataclasses.dataclass
class FileRecord:
    path: str
    size: int
    sha256: str
    git_oid: str
    lfs: bool
    xet_hash: str | None = None
    pointer_size: int | None = None

    def tree_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "type": "file",
            "path": self.path,
            "size": self.size,
            "oid": self.git_oid,
        }
        if self.lfs:
            entry["lfs"] = {
                "oid": self.sha256,
                "size": self.size,
                "pointerSize": self.pointer_size,
            }
        if self.xet_hash:
            entry["xetHash"] = self.xet_hash
        return entry


@dataclasses.dataclass
class Commit:
    oid: str
    parent: str | None
    summary: str
    tree: dict[str, FileRecord]
    created: float


@dataclasses.dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created: float
    branches: dict[str, str] = dataclasses.field(default_factory=dict)
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    commits: dict[str, Commit] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Fault:
    """Answer requests matching ``method`` and ``path_contains`` with ``action``.

    ``action`` is an HTTP status or ``"drop"`` (close the connection unanswered);
    ``remaining`` counts how many more requests it hits (-1 = forever).
    """

    method: str
    path_contains: str
    action: int | str
    remaining: int = 1
    hits: int = 0


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"
    ).encode()


def iso(ts: float) -> str:
    moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def xet_hash_hex(raw: bytes) -> str:
    # Xet prints a 32-byte hash as four little-endian u64 words, each as 16 hex digits.
    return "".join(f"{word:016x}" for word in struct.unpack("<4Q", raw))


def read_shard_files(data: bytes) -> Iterator[tuple[str, str, int]]:
    """Yield (sha256, xet_hash, size) for each file in an MDB shard's file-info section."""
    if not data.startswith(b"HFRepoMetaData"):
        return
    offset = 48
    record = 48
    while offset + record <= len(data):
        header = data[offset : offset + record]
        file_hash = header[:32]
        if file_hash == b"\xff" * 32:
            return
        flags, entries = struct.unpack_from("<II", header, 32)
        offset += record
        size = 0
        for index in range(entries):
            (segment,) = struct.unpack_from("<I", data, offset + index * record + 36)
            size += segment
        offset += entries * record
        if flags & 0x80000000:
            offset += entries * record
        sha256 = None
        if flags & 0x40000000:
            sha256 = xet_hash_hex(data[offset : offset + 32])
            offset += record
        if sha256:
            yield sha256, xet_hash_hex(file_hash), size


class FakeHub:
    """The state and the server. Use as a context manager or call start()/stop()."""

    def __init__(
        self,
        root: Path,
        *,
        write_token: str = WRITE_TOKEN,
        read_token: str = READ_TOKEN,
        user: str = USER,
    ) -> None:
        self.root = Path(root)
        self.blob_dir = self.root / "blobs"
        self.cas_dir = self.root / "cas"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.cas_dir.mkdir(parents=True, exist_ok=True)
        self.write_token = write_token
        self.read_token = read_token
        self.user = user
        # What whoami reports for the read token; "fineGrained" hides that it cannot write.
        self.read_token_role = "read"
        # Paths a commit silently loses (to test that clients check what arrived).
        self.lose_on_commit: set[str] = set()
        self.lock = threading.RLock()
        self.repos: dict[tuple[str, str], Repo] = {}
        self.request_log: list[tuple[str, str, int]] = []
        self.faults: list[Fault] = []
        self._xet_index: dict[str, tuple[str, int]] = {}
        self._shards_seen: set[str] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.endpoint = ""

    # ----- lifecycle -------------------------------------------------------------------
    def start(self, port: int = 0) -> str:
        hub = self

        class Handler(_Handler):
            fake_hub = hub

        server = _LoopbackServer(("127.0.0.1", port), Handler)
        self._server = server
        self.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="fakehub", daemon=True
        )
        self._thread.start()
        return self.endpoint

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> FakeHub:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client_env(self, hf_home: Path, token: str | None = None) -> dict[str, str]:
        """Environment for a subprocess (openk CLI, lerobot) to use this Hub as huggingface.co.

        huggingface_hub reads these at import time, so pass them to a fresh process.
        """
        return {
            "HF_ENDPOINT": self.endpoint,
            "HF_TOKEN": token or self.write_token,
            "HF_HOME": str(hf_home),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_UPDATE_CHECK": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }

    # ----- test hooks ------------------------------------------------------------------
    def add_fault(
        self, method: str, path_contains: str, action: int | str, times: int = 1
    ) -> Fault:
        fault = Fault(method.upper(), path_contains, action, times)
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def requests(self, method: str | None = None, contains: str = "") -> list[tuple[str, str, int]]:
        with self.lock:
            return [
                entry
                for entry in self.request_log
                if (method is None or entry[0] == method) and contains in entry[1]
            ]

    def unknown_routes(self) -> list[tuple[str, str, int]]:
        with self.lock:
            return [entry for entry in self.request_log if entry[2] == 599]

    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        with self.lock:
            return self.repos[(repo_type, repo_id)]

    def file_bytes(
        self, repo_id: str, path: str, revision: str = "main", repo_type: str = "dataset"
    ) -> bytes:
        with self.lock:
            repo = self.repos[(repo_type, repo_id)]
            record = self._commit(repo, revision).tree[path]
            return self._materialise(record).read_bytes()

    def xorb_count(self) -> int:
        """Xorbs (deduplicated data blocks) hf_xet has written to the local CAS."""
        return sum(
            1
            for p in self.cas_dir.rglob("default.*")
            if p.is_file() and p.parent.name == "xorbs" and "." not in p.name[len("default.") :]
        )

    def create_repo_direct(
        self, repo_id: str, *, private: bool, repo_type: str = "dataset"
    ) -> Repo:
        """Make a repo without going through HTTP (for 'it already exists' scenarios)."""
        with self.lock:
            return self._new_repo(repo_type, repo_id, private)

    # ----- storage ---------------------------------------------------------------------
    def _store_blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        target = self.blob_dir / sha
        if not target.exists():
            tmp = self.blob_dir / f".{sha}.{secrets.token_hex(4)}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, target)
        return sha

    def _xet_lookup(self, sha256: str) -> tuple[str, int] | None:
        if sha256 not in self._xet_index:
            for shard in sorted(self.cas_dir.rglob("*.mdb")):
                if shard.name in self._shards_seen:
                    continue
                self._shards_seen.add(shard.name)
                for sha, xet_hash, size in read_shard_files(shard.read_bytes()):
                    self._xet_index[sha] = (xet_hash, size)
        return self._xet_index.get(sha256)

    def _materialise(self, record: FileRecord) -> Path:
        """The blob file for a record, rebuilding a Xet-only file with hf_xet on first need."""
        blob = self.blob_dir / record.sha256
        if blob.exists():
            return blob
        if not record.xet_hash:
            raise HubHTTPError(500, f"blob for {record.path} is missing")
        import hf_xet

        tmp = self.blob_dir / f".{record.sha256}.{secrets.token_hex(4)}.rebuild"
        session = hf_xet.XetSession()
        with session.new_file_download_group(
            endpoint=self._cas_url(),
            token="local",
            token_expiry_unix_secs=int(time.time()) + 3600,
        ) as group:
            group.start_download_file(hf_xet.XetFileInfo(record.xet_hash, record.size), str(tmp))
        data = tmp.read_bytes()
        if hashlib.sha256(data).hexdigest() != record.sha256:
            tmp.unlink(missing_ok=True)
            raise HubHTTPError(500, f"xet rebuild of {record.path} has the wrong sha256")
        os.replace(tmp, blob)
        return blob

    def _cas_url(self) -> str:
        return "local://" + str(self.cas_dir.resolve())

    # ----- repo model ------------------------------------------------------------------
    def _new_repo(self, repo_type: str, repo_id: str, private: bool) -> Repo:
        now = time.time()
        repo = Repo(repo_type=repo_type, repo_id=repo_id, private=private, created=now)
        attributes = b"".join(
            f"*{ext} filter=lfs diff=lfs merge=lfs -text\n".encode()
            for ext in sorted(LFS_EXTENSIONS)
        )
        sha = self._store_blob(attributes)
        record = FileRecord(".gitattributes", len(attributes), sha, git_blob_oid(attributes), False)
        commit = Commit(secrets.token_hex(20), None, "initial commit", {record.path: record}, now)
        repo.commits[commit.oid] = commit
        repo.branches["main"] = commit.oid
        self.repos[(repo_type, repo_id)] = repo
        return repo

    def _commit(self, repo: Repo, revision: str) -> Commit:
        oid = repo.branches.get(revision) or repo.tags.get(revision)
        if oid is None and revision in repo.commits:
            oid = revision
        if oid is None:
            raise HubHTTPError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo.commits[oid]


class _LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return bool(client_address) and str(client_address[0]).startswith("127.")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake_hub: FakeHub
    timeout = SOCKET_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        # The request log on FakeHub is the record; stderr stays quiet.
        return

    # Every verb goes through one dispatcher.
    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    # ----- plumbing --------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            total = 0
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY_BYTES:
                    raise HubHTTPError(413, "request body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise HubHTTPError(413, "request body too large")
        return self.rfile.read(length) if length else b""

    def _role(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return None
        token = auth[len("Bearer ") :].strip()
        hub = self.fake_hub
        if secrets.compare_digest(token, hub.write_token):
            return "write"
        if secrets.compare_digest(token, hub.read_token):
            return "read"
        return "invalid"

    def _require_write(self) -> None:
        role = self._role()
        if role in (None, "invalid"):
            raise HubHTTPError(401, "Invalid credentials in Authorization header")
        if role != "write":
            raise HubHTTPError(
                403,
                "You don't have the rights to write to this repo: the token is read-only",
            )

    def _send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self._log_status(status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _log_status(self, status: int) -> None:
        """Log before the response leaves, so a client that has its answer sees the entry."""
        if self._status:
            return
        self._status = status
        with self.fake_hub.lock:
            # 599 marks a route the fake does not know, so contract drift shows up in tests.
            logged = 599 if self._unknown_route else status
            self.fake_hub.request_log.append((self.command, self.path.partition("?")[0], logged))

    def _json(self, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers=headers)

    def _error(self, exc: HubHTTPError) -> None:
        headers = {"X-Error-Message": exc.message, **exc.headers}
        if exc.code:
            headers["X-Error-Code"] = exc.code
        self._json({"error": exc.message}, exc.status, headers)

    def _dispatch(self) -> None:
        hub = self.fake_hub
        self._status = 0
        self._unknown_route = False
        raw_path, _, query = self.path.partition("?")
        self._query = urllib.parse.parse_qs(query, keep_blank_values=True)
        try:
            body = self._read_body()
        except HubHTTPError as exc:
            self.close_connection = True
            self._error(exc)
            return
        fault = self._take_fault(raw_path)
        if fault is not None:
            with hub.lock:
                hub.request_log.append((self.command, raw_path, -1))
            if fault.action == "drop":
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            status = int(fault.action)
            self._json(
                {"error": f"injected fault {status}"}, status, {"X-Error-Message": "injected"}
            )
            return
        try:
            segments = [urllib.parse.unquote(s) for s in raw_path.split("/")[1:]]
            with hub.lock:
                self._route(segments, body)
        except HubHTTPError as exc:
            self._error(exc)
        except Exception as exc:  # never drop a connection silently; the client retries a 500
            self._error(HubHTTPError(500, f"fake hub error: {type(exc).__name__}: {exc}"))

    def _take_fault(self, path: str) -> Fault | None:
        hub = self.fake_hub
        with hub.lock:
            for fault in hub.faults:
                if fault.remaining == 0:
                    continue
                if fault.method not in ("*", self.command) or fault.path_contains not in path:
                    continue
                if fault.remaining > 0:
                    fault.remaining -= 1
                fault.hits += 1
                return fault
        return None

    # ----- routing ---------------------------------------------------------------------
    def _route(self, seg: list[str], body: bytes) -> None:
        method = self.command
        if seg[:1] == ["api"]:
            rest = seg[1:]
            if rest == ["whoami-v2"] and method == "GET":
                return self._whoami()
            if rest == ["agent-harnesses"] and method == "GET":
                # huggingface_hub fetches this registry once a day to label its user agent.
                return self._json({"standardEnvVars": [], "harnesses": {}})
            if rest == ["validate-yaml"] and method == "POST":
                return self._json({"errors": [], "warnings": []})
            if rest == ["repos", "create"] and method == "POST":
                return self._create_repo(body)
            if rest == ["repos", "delete"] and method == "DELETE":
                return self._delete_repo(body)
            if len(rest) >= 3 and rest[0] in TYPE_BY_PLURAL:
                return self._repo_api(
                    TYPE_BY_PLURAL[rest[0]], f"{rest[1]}/{rest[2]}", rest[3:], body
                )
        if seg[:2] == ["_lfs", "upload"] and len(seg) == 3 and method == "PUT":
            return self._lfs_upload(seg[2], body)
        if seg[:2] == ["_lfs", "verify"] and len(seg) == 3 and method == "POST":
            return self._lfs_verify(body)
        repo_type = "model"
        rest = seg
        if seg[:1] in (["datasets"], ["spaces"]):
            repo_type = TYPE_BY_PLURAL[seg[0]]
            rest = seg[1:]
        if (
            len(rest) == 6
            and rest[1].endswith(".git")
            and rest[2:] == ["info", "lfs", "objects", "batch"]
            and method == "POST"
        ):
            return self._lfs_batch(repo_type, f"{rest[0]}/{rest[1][:-4]}", body)
        if len(rest) >= 5 and rest[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(repo_type, f"{rest[0]}/{rest[1]}", rest[3], "/".join(rest[4:]))
        self._unknown_route = True
        raise HubHTTPError(404, f"no route for {method} {self.path}")

    def _repo_for_read(self, repo_type: str, repo_id: str) -> Repo:
        role = self._role()
        if role == "invalid":
            raise HubHTTPError(401, "Invalid credentials in Authorization header")
        repo = self.fake_hub.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and role is None):
            raise HubHTTPError(404, "Repository not found", "RepoNotFound")
        return repo

    def _repo_for_write(self, repo_type: str, repo_id: str) -> Repo:
        repo = self._repo_for_read(repo_type, repo_id)
        self._require_write()
        return repo

    def _repo_api(self, repo_type: str, repo_id: str, rest: list[str], body: bytes) -> None:
        method = self.command
        action = rest[0] if rest else ""
        if not rest and method == "GET":
            repo = self._repo_for_read(repo_type, repo_id)
            return self._repo_info(repo, "main")
        if action == "revision" and len(rest) == 2 and method == "GET":
            repo = self._repo_for_read(repo_type, repo_id)
            return self._repo_info(repo, rest[1])
        if action == "settings" and len(rest) == 1 and method == "PUT":
            repo = self._repo_for_write(repo_type, repo_id)
            return self._settings(repo, body)
        if action == "preupload" and len(rest) == 2 and method == "POST":
            return self._preupload(self._repo_for_write(repo_type, repo_id), rest[1], body)
        if action == "xet-write-token" and len(rest) == 2 and method == "GET":
            self._repo_for_write(repo_type, repo_id)
            return self._xet_token()
        if action == "xet-read-token" and len(rest) == 2 and method == "GET":
            repo = self._repo_for_read(repo_type, repo_id)
            self.fake_hub._commit(repo, rest[1])
            return self._xet_token()
        if action == "commit" and len(rest) == 2 and method == "POST":
            return self._commit_post(self._repo_for_write(repo_type, repo_id), rest[1], body)
        if action == "paths-info" and len(rest) == 2 and method == "POST":
            return self._paths_info(self._repo_for_read(repo_type, repo_id), rest[1], body)
        if action == "tree" and len(rest) >= 2 and method == "GET":
            repo = self._repo_for_read(repo_type, repo_id)
            return self._tree(repo, rest[1], "/".join(rest[2:]))
        if action == "refs" and len(rest) == 1 and method == "GET":
            return self._refs(self._repo_for_read(repo_type, repo_id))
        if action == "branch" and len(rest) == 2 and method in ("POST", "DELETE"):
            return self._branch(self._repo_for_write(repo_type, repo_id), rest[1], body)
        if action == "tag" and len(rest) == 2 and method in ("POST", "DELETE"):
            return self._tag(self._repo_for_write(repo_type, repo_id), rest[1], body)
        self._unknown_route = True
        raise HubHTTPError(404, f"no route for {method} {self.path}")

    # ----- handlers --------------------------------------------------------------------
    def _whoami(self) -> None:
        role = self._role()
        if role in (None, "invalid"):
            raise HubHTTPError(401, "Invalid credentials in Authorization header")
        self._json(
            {
                "type": "user",
                "name": self.fake_hub.user,
                "fullname": self.fake_hub.user,
                "orgs": [],
                "auth": {
                    "type": "access_token",
                    "accessToken": {
                        "role": self.fake_hub.read_token_role if role == "read" else role
                    },
                },
            }
        )

    def _create_repo(self, body: bytes) -> None:
        self._require_write()
        payload = json.loads(body or b"{}")
        repo_type = payload.get("type") or "model"
        namespace = payload.get("organization") or self.fake_hub.user
        name = payload.get("name") or ""
        if not name or "/" in name or name.startswith((".", "-")) or ".." in name:
            raise HubHTTPError(400, f"invalid repo name {name!r}")
        repo_id = f"{namespace}/{name}"
        url = f"{self.fake_hub.endpoint}/{URL_PREFIX[repo_type]}{repo_id}"
        if (repo_type, repo_id) in self.fake_hub.repos:
            self._json(
                {"error": "You already created this repo", "url": url},
                409,
                {"X-Error-Message": "You already created this repo"},
            )
            return
        private = payload.get("visibility") == "private" or payload.get("private") is True
        self.fake_hub._new_repo(repo_type, repo_id, private)
        self._json({"url": url, "name": repo_id, "id": repo_id})

    def _delete_repo(self, body: bytes) -> None:
        self._require_write()
        payload = json.loads(body or b"{}")
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or self.fake_hub.user}/{payload.get('name')}"
        if self.fake_hub.repos.pop((repo_type, repo_id), None) is None:
            raise HubHTTPError(404, "Repository not found", "RepoNotFound")
        self._json({})

    def _settings(self, repo: Repo, body: bytes) -> None:
        payload = json.loads(body or b"{}")
        if "visibility" in payload:
            repo.private = payload["visibility"] == "private"
        elif "private" in payload:
            repo.private = bool(payload["private"])
        self._json({})

    def _repo_info(self, repo: Repo, revision: str) -> None:
        commit = self.fake_hub._commit(repo, revision)
        namespace = repo.repo_id.split("/")[0]
        blobs = self._query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for record in sorted(commit.tree.values(), key=lambda r: r.path):
            sibling: dict[str, Any] = {"rfilename": record.path}
            if blobs:
                sibling["size"] = record.size
                sibling["blobId"] = record.git_oid
                if record.lfs:
                    sibling["lfs"] = {
                        "size": record.size,
                        "sha256": record.sha256,
                        "pointerSize": record.pointer_size,
                    }
            siblings.append(sibling)
        self._json(
            {
                "id": repo.repo_id,
                "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
                "author": namespace,
                "sha": commit.oid,
                "private": repo.private,
                "disabled": False,
                "gated": False,
                "lastModified": iso(commit.created),
                "createdAt": iso(repo.created),
                "tags": [],
                "downloads": 0,
                "likes": 0,
                "cardData": {},
                "siblings": siblings,
            }
        )

    def _head(self, repo: Repo, revision: str) -> Commit:
        if revision not in repo.branches:
            raise HubHTTPError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo.commits[repo.branches[revision]]

    def _preupload(self, repo: Repo, revision: str, body: bytes) -> None:
        if self._query.get("create_pr"):
            raise HubHTTPError(400, "pull requests are not modelled by the fake hub")
        head = self._head(repo, revision)
        payload = json.loads(body or b"{}")
        answers = []
        for item in payload.get("files", []):
            path = item["path"]
            existing = head.tree.get(path)
            if existing is not None:
                lfs = existing.lfs
                oid: str | None = existing.sha256 if lfs else existing.git_oid
            else:
                sample = base64.b64decode(item.get("sample") or "")
                lfs = (
                    b"\0" in sample
                    or int(item.get("size") or 0) >= LFS_SIZE_THRESHOLD
                    or Path(path).suffix.lower() in LFS_EXTENSIONS
                )
                oid = None
            answers.append(
                {
                    "path": path,
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": oid,
                }
            )
        self._json({"files": answers, "commitOid": head.oid})

    def _xet_token(self) -> None:
        expiry = int(time.time()) + 3600
        token = "xet_" + secrets.token_hex(16)
        cas = self.fake_hub._cas_url()
        self._json(
            {"casUrl": cas, "accessToken": token, "exp": expiry},
            headers={
                "X-Xet-Cas-Url": cas,
                "X-Xet-Access-Token": token,
                "X-Xet-Token-Expiration": str(expiry),
            },
        )

    def _lfs_batch(self, repo_type: str, repo_id: str, body: bytes) -> None:
        self._repo_for_write(repo_type, repo_id)
        payload = json.loads(body or b"{}")
        objects = []
        for item in payload.get("objects", []):
            oid, size = item["oid"], item["size"]
            entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if not (self.fake_hub.blob_dir / oid).exists():
                base = self.fake_hub.endpoint
                entry["actions"] = {
                    "upload": {"href": f"{base}/_lfs/upload/{oid}"},
                    "verify": {"href": f"{base}/_lfs/verify/{oid}"},
                }
            objects.append(entry)
        self._send(
            200,
            json.dumps({"transfer": "basic", "objects": objects}).encode(),
            "application/vnd.git-lfs+json",
        )

    def _lfs_upload(self, oid: str, body: bytes) -> None:
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubHTTPError(400, "uploaded content does not match its oid")
        self.fake_hub._store_blob(body)
        self._json({})

    def _lfs_verify(self, body: bytes) -> None:
        payload = json.loads(body or b"{}")
        if not (self.fake_hub.blob_dir / str(payload.get("oid"))).exists():
            raise HubHTTPError(404, "object not found")
        self._json({})

    def _commit_post(self, repo: Repo, revision: str, body: bytes) -> None:
        hub = self.fake_hub
        if self._query.get("create_pr", ["0"])[0] not in ("", "0", "false"):
            raise HubHTTPError(400, "pull requests are not modelled by the fake hub")
        head = self._head(repo, revision)
        tree = dict(head.tree)
        summary = ""
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item.get("key"), item.get("value") or {}
            if key == "header":
                summary = value.get("summary", "")
                parent = value.get("parentCommit")
                if parent and parent != head.oid:
                    raise HubHTTPError(
                        412, "A commit has happened since. Please refresh and try again."
                    )
            elif key == "file":
                data = base64.b64decode(value["content"])
                sha = hub._store_blob(data)
                tree[value["path"]] = FileRecord(
                    value["path"], len(data), sha, git_blob_oid(data), False
                )
            elif key == "lfsFile":
                sha, size = value["oid"], int(value["size"])
                xet_hash = None
                if not (hub.blob_dir / sha).exists():
                    found = hub._xet_lookup(sha)
                    if found is None:
                        raise HubHTTPError(422, f"object {sha} was not uploaded")
                    xet_hash, size = found
                pointer = lfs_pointer(sha, size)
                tree[value["path"]] = FileRecord(
                    value["path"], size, sha, git_blob_oid(pointer), True, xet_hash, len(pointer)
                )
            elif key == "deletedFile":
                if tree.pop(value["path"], None) is None:
                    raise HubHTTPError(404, f"{value['path']} does not exist", "EntryNotFound")
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                for path in [p for p in tree if p.startswith(prefix)]:
                    del tree[path]
            else:
                raise HubHTTPError(400, f"unknown commit operation {key!r}")
        for path in hub.lose_on_commit & set(tree):
            del tree[path]
        commit = Commit(secrets.token_hex(20), head.oid, summary, tree, time.time())
        repo.commits[commit.oid] = commit
        repo.branches[revision] = commit.oid
        prefix = URL_PREFIX[repo.repo_type]
        self._json(
            {
                "success": True,
                "commitOid": commit.oid,
                "pullRequestUrl": None,
                "commitUrl": f"{hub.endpoint}/{prefix}{repo.repo_id}/commit/{commit.oid}",
            }
        )

    def _entries(self, commit: Commit, prefix: str, recursive: bool) -> list[dict[str, Any]]:
        base = prefix.strip("/")
        lead = base + "/" if base else ""
        files = [r for p, r in sorted(commit.tree.items()) if p.startswith(lead)]
        entries: list[dict[str, Any]] = []
        dirs: set[str] = set()
        for record in files:
            parts = record.path[len(lead) :].split("/")
            for depth in range(1, len(parts)):
                if not recursive and depth > 1:
                    break
                dirs.add(lead + "/".join(parts[:depth]))
            if recursive or len(parts) == 1:
                entries.append(record.tree_entry())
        for directory in sorted(dirs):
            oid = hashlib.sha1(f"{commit.oid}:{directory}".encode()).hexdigest()
            entries.append({"type": "directory", "path": directory, "size": 0, "oid": oid})
        return entries

    def _tree(self, repo: Repo, revision: str, path: str) -> None:
        commit = self.fake_hub._commit(repo, revision)
        path = path.strip("/")
        if path:
            is_dir = any(p.startswith(path + "/") for p in commit.tree)
            if not is_dir:
                raise HubHTTPError(
                    404,
                    f"{path} is not a directory in {repo.repo_id}",
                    "EntryNotFound",
                    {"X-Repo-Commit": commit.oid},
                )
        recursive = self._query.get("recursive", ["false"])[0].lower() in ("true", "1")
        self._json(self._entries(commit, path, recursive))

    def _paths_info(self, repo: Repo, revision: str, body: bytes) -> None:
        commit = self.fake_hub._commit(repo, revision)
        form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
        if not form and body.strip().startswith(b"{"):
            payload = json.loads(body)
            form = {"paths": payload.get("paths", [])}
        result = []
        for path in form.get("paths", []):
            path = path.strip("/")
            if path in commit.tree:
                result.append(commit.tree[path].tree_entry())
            elif any(p.startswith(path + "/") for p in commit.tree):
                oid = hashlib.sha1(f"{commit.oid}:{path}".encode()).hexdigest()
                result.append({"type": "directory", "path": path, "size": 0, "oid": oid})
        self._json(result)

    def _refs(self, repo: Repo) -> None:
        payload: dict[str, Any] = {
            "branches": [
                {"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid}
                for name, oid in sorted(repo.branches.items())
            ],
            "tags": [
                {"name": name, "ref": f"refs/tags/{name}", "targetCommit": oid}
                for name, oid in sorted(repo.tags.items())
            ],
            "converts": [],
        }
        if self._query.get("include_prs"):
            payload["pullRequests"] = []
        self._json(payload)

    def _branch(self, repo: Repo, name: str, body: bytes) -> None:
        if self.command == "DELETE":
            if repo.branches.pop(name, None) is None:
                raise HubHTTPError(404, f"Invalid rev id: {name}", "RevisionNotFound")
            return self._json({})
        if name in repo.branches:
            raise HubHTTPError(409, f"Branch {name} already exists")
        payload = json.loads(body or b"{}")
        start = self.fake_hub._commit(repo, payload.get("startingPoint") or "main")
        repo.branches[name] = start.oid
        self._json({})

    def _tag(self, repo: Repo, name: str, body: bytes) -> None:
        if self.command == "DELETE":
            if repo.tags.pop(name, None) is None:
                raise HubHTTPError(404, f"Invalid rev id: {name}", "RevisionNotFound")
            return self._json({})
        payload = json.loads(body or b"{}")
        tag = payload.get("tag") or ""
        if not tag:
            raise HubHTTPError(400, "missing tag name")
        if tag in repo.tags:
            raise HubHTTPError(409, f"Tag {tag} already exists")
        repo.tags[tag] = self.fake_hub._commit(repo, name).oid
        self._json({})

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        hub = self.fake_hub
        repo = self._repo_for_read(repo_type, repo_id)
        commit = hub._commit(repo, revision)
        record = commit.tree.get(path)
        if record is None:
            raise HubHTTPError(
                404,
                f"Entry not found: {path}",
                "EntryNotFound",
                {"X-Repo-Commit": commit.oid},
            )
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{record.sha256 if record.lfs else record.git_oid}"',
            "Accept-Ranges": "bytes",
        }
        if record.xet_hash:
            prefix = f"{hub.endpoint}/api/{repo_type}s/{repo.repo_id}"
            headers["X-Xet-Hash"] = record.xet_hash
            headers["Link"] = f'<{prefix}/xet-read-token/{commit.oid}>; rel="xet-auth"'
        if self.command == "HEAD":
            self._log_status(200)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(record.size))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            return
        data = hub._materialise(record).read_bytes()
        status = 200
        ranged = self.headers.get("Range", "")
        if ranged.startswith("bytes="):
            start_text, _, end_text = ranged[len("bytes=") :].partition("-")
            start = int(start_text or 0)
            end = int(end_text) if end_text else len(data) - 1
            end = min(end, len(data) - 1)
            if start > end:
                raise HubHTTPError(416, "range not satisfiable")
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data = data[start : end + 1]
            status = 206
        self._send(status, data, "application/octet-stream", headers)


def main(argv: list[str] | None = None) -> int:
    """Run the fake Hub in the foreground, e.g. to try `openk push` by hand without internet."""
    import argparse
    import signal
    import tempfile

    parser = argparse.ArgumentParser(description="A loopback fake Hugging Face Hub (for tests).")
    parser.add_argument("--root", type=Path, default=None, help="storage folder (default: temp)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: free)")
    args = parser.parse_args(argv)
    root = args.root or Path(tempfile.mkdtemp(prefix="fakehub-"))
    hub = FakeHub(root)
    endpoint = hub.start(args.port)
    # Test-only tokens: printing them is how a user of this fixture learns them.
    print(f"fake Hub at {endpoint} storing under {root}", flush=True)
    print(f"export HF_ENDPOINT={endpoint} HF_TOKEN={hub.write_token}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    hub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
