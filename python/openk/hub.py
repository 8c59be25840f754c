"""Push LeRobot v3.0 datasets to the Hugging Face Hub and pull them back.

``push_dataset`` creates the dataset repo, uploads the finished dataset files (never staging,
journal, temp or lock files), writes a dataset card and moves the codebase-version tag
(``v3.0``) that lerobot needs to load a dataset by repo id. Every failure raises ``HubError``
whose message says the local dataset is intact and gives the exact ``openk push`` command to
retry. The token is read from ``HF_TOKEN`` or the huggingface_hub login and is never printed,
logged or written by openk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import json
import logging
import re
import shlex
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from openk.dataset.meta import INFO_PATH, read_info
from openk.errors import DatasetError, HubError, RepoIdError
from openk.repo_id import validate_repo_id

logger = logging.getLogger(__name__)

# Only these top-level trees of a LeRobot v3.0 dataset are uploaded; the card is written by us.
UPLOAD_ALLOW_PATTERNS: tuple[str, ...] = ("meta/*", "data/*", "videos/*")

# Never uploaded, wherever they sit (fnmatch; `*` also crosses `/`). Any file or folder whose
# name starts with "." is private to the writer (e.g. openk's `.openk/` journal and commit log,
# `.staging/`), as are temp/partial/lock files and lerobot's `images/` PNG staging.
UPLOAD_EXCLUDE_PATTERNS: tuple[str, ...] = (
    ".*",
    "*/.*",
    "*.openk-tmp",
    "*-tmp",
    "*.tmp",
    "*.temp",
    "*.part",
    "*.partial",
    "*.lock",
    "*.journal",
    "*~",
    "images/*",
)

# The dataset writer's redo log: while it exists a commit is half-applied on disk.
PENDING_COMMIT_LOG = ".openk/commit.json"

DEFAULT_TAGS: tuple[str, ...] = ("LeRobot",)

_VERSION_TAG = re.compile(r"v\d+\.\d+")


class HubVisibilityWarning(UserWarning):
    """The Hub repo's visibility differs from what was asked for and was left unchanged."""


@dataclasses.dataclass(frozen=True)
class PushResult:
    """What a successful push produced."""

    repo_id: str
    repo_url: str
    commit_oid: str
    commit_url: str
    tag: str
    private: bool
    files: tuple[str, ...]

    @property
    def url(self) -> str:
        """The dataset's page on the Hub."""
        return self.repo_url


def local_root_for(home: Path, repo_id: str) -> Path:
    """``home / repo_id`` after validating the id, guaranteed to stay inside ``home``."""
    validate_repo_id(repo_id)
    root = Path(home) / repo_id
    if not root.resolve().is_relative_to(Path(home).resolve()):
        raise RepoIdError(f"repo id {repo_id!r} would leave {home}; use namespace/name")
    return root


def retry_command(root: Path | str, repo_id: str, *, private: bool = False) -> str:
    """The shell command that retries a push; it never carries a token."""
    command = f"openk push {shlex.quote(str(root))} --repo-id {shlex.quote(repo_id)}"
    return command + (" --private" if private else "")


def files_to_upload(root: Path) -> list[str]:
    """Dataset files (POSIX, relative to root) that a push uploads, sorted."""
    chosen = []
    for path in sorted(Path(root).rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(root).as_posix()
        if not any(fnmatch.fnmatch(rel, pattern) for pattern in UPLOAD_ALLOW_PATTERNS):
            continue
        if any(fnmatch.fnmatch(rel, pattern) for pattern in UPLOAD_EXCLUDE_PATTERNS):
            continue
        chosen.append(rel)
    return chosen


def dataset_card(
    info: dict[str, Any],
    repo_id: str,
    *,
    tags: Iterable[str] | None = None,
    license: str = "apache-2.0",
) -> str:
    """A README.md dataset card: YAML front matter the Hub indexes, and a short summary."""
    all_tags = list(dict.fromkeys([*DEFAULT_TAGS, *(tags or ())]))
    front = {
        "license": license,
        "task_categories": ["robotics"],
        "tags": all_tags,
        "configs": [{"config_name": "default", "data_files": "data/*/*.parquet"}],
    }
    features = info.get("features") or {}
    cameras = [k for k, v in features.items() if isinstance(v, dict) and v.get("dtype") == "video"]
    summary = [
        f"- robot type: `{info.get('robot_type')}`",
        f"- episodes: {info.get('total_episodes')}, frames: {info.get('total_frames')}, "
        f"fps: {info.get('fps')}",
        f"- tasks: {info.get('total_tasks')}",
        f"- cameras: {', '.join(f'`{c}`' for c in cameras) or 'none'}",
        f"- format: LeRobot {info.get('codebase_version')}",
    ]
    body = (
        f"# {repo_id}\n\n"
        "Robot demonstrations recorded with [openk](https://github.com/CleanKDev/OpenK) "
        "in the LeRobot dataset format.\n\n"
        + "\n".join(summary)
        + "\n\nLoad it with lerobot:\n\n```python\n"
        "from lerobot.datasets.lerobot_dataset import LeRobotDataset\n\n"
        f'dataset = LeRobotDataset("{repo_id}")\n```\n\n'
        f"## {INFO_PATH}\n\n```json\n" + json.dumps(info, indent=2) + "\n```\n"
    )
    return "---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n\n" + body


def _describe_failure(exc: BaseException) -> str:
    """A short cause for a failed Hub call, by class: auth, permission, network, server."""
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None) if response is not None else None
    if isinstance(exc, RepositoryNotFoundError) and status != 401:
        return (
            "the repo was not found (a private repo is invisible to a wrong token or user; "
            "check the namespace and `hf auth whoami`)"
        )
    if isinstance(exc, HfHubHTTPError) and status is not None:
        if status == 401:
            return "the Hub rejected the token (401); log in again with `hf auth login`"
        if status == 403:
            return (
                "the token may not write to this repo (403); use a token with write access "
                "(`hf auth login`) or a namespace you own"
            )
        if status >= 500:
            return f"the Hub had a server error ({status}); try again later"
        return f"the Hub answered {status}: {exc}"
    if isinstance(exc, OSError) or type(exc).__module__.startswith(("httpx", "httpcore")):
        return f"a network error ({type(exc).__name__}: {exc}); check the connection"
    return f"{type(exc).__name__}: {exc}"


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "<token>") if token else text


class _Push:
    """One push attempt; turns every failure into a HubError with the retry command."""

    def __init__(self, root: Path, repo_id: str, private: bool, token: str | None) -> None:
        self.root = root
        self.repo_id = repo_id
        self.private = private
        self.token = token

    def fail(self, cause: str, exc: BaseException | None = None) -> HubError:
        message = (
            f"Push of {self.root} to {self.repo_id} failed: {cause}. "
            f"The local dataset at {self.root} is intact. "
            f"Retry with: {retry_command(self.root, self.repo_id, private=self.private)}"
        )
        error = HubError(_scrub(message, self.token))
        if exc is not None:
            error.__cause__ = exc
        return error

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[None]:
        try:
            yield
        except HubError:
            raise
        except Exception as exc:  # every Hub failure must carry the retry command
            raise self.fail(f"{what}: {_scrub(_describe_failure(exc), self.token)}", exc) from exc


def push_dataset(
    root: Path | str,
    repo_id: str,
    *,
    private: bool = False,
    tags: Iterable[str] | None = None,
    license: str = "apache-2.0",
    branch: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    commit_message: str | None = None,
    tag_version: bool = True,
) -> PushResult:
    """Upload a finished LeRobot v3.0 dataset at ``root`` to the dataset repo ``repo_id``.

    Creates the repo (private when ``private``; an existing repo keeps its visibility and a
    public one asked to be private raises a HubVisibilityWarning), uploads the files listed by
    ``files_to_upload`` (meta/, data/, videos/ minus ``UPLOAD_EXCLUDE_PATTERNS``), commits a
    README.md dataset card, checks that every file arrived with its size, and only then moves
    the tag named by ``codebase_version`` (e.g. ``v3.0``) to the new head so lerobot can load
    it by repo id.

    ``token`` defaults to ``HF_TOKEN`` or the huggingface_hub login; ``endpoint`` defaults to
    ``HF_ENDPOINT`` / huggingface.co. Re-running after a failure resumes: files already on the
    Hub are not sent again.
    """
    validate_repo_id(repo_id)
    root = Path(root).expanduser().resolve()
    info = read_info(root)
    version = str(info.get("codebase_version") or "")
    if tag_version and not _VERSION_TAG.fullmatch(version):
        raise DatasetError(
            f"{root}/{INFO_PATH} has codebase_version {version!r}, not like 'v3.0'; "
            f"run `openk verify {root}`"
        )
    if (root / PENDING_COMMIT_LOG).exists():
        raise DatasetError(
            f"{root} has an unfinished episode commit ({PENDING_COMMIT_LOG}); run "
            f"`openk recover {root}` to complete it, then push again"
        )
    files = files_to_upload(root)
    if not any(f.startswith("data/") for f in files):
        raise DatasetError(f"{root} has no data/ parquet files to push; record an episode first")

    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import RevisionNotFoundError

    push = _Push(root, repo_id, private, token)
    with push.step("reading the token"):
        token = token or get_token()
    push.token = token
    if not token:
        raise push.fail("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    api = HfApi(endpoint=endpoint, token=token)
    revision = branch or "main"

    with push.step("checking the token"):
        identity = api.whoami()
    role = ((identity.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise push.fail(
            "the token is read-only; create a token with write access and run `hf auth login`"
        )
    logger.info("pushing %s to %s as %s", root, repo_id, identity.get("name"))

    with push.step("creating the repo"):
        repo_url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        is_private = bool(api.dataset_info(repo_id).private)
    if private and not is_private:
        message = (
            f"{repo_id} already exists and is PUBLIC; openk did not change its visibility, so "
            f"this push is public. Make it private on the Hub (repo settings) or "
            f"`hf repos settings {repo_id} --private --repo-type dataset` if that is wanted."
        )
        logger.warning(message)
        warnings.warn(message, HubVisibilityWarning, stacklevel=2)

    if branch:
        with push.step(f"creating branch {branch}"):
            api.create_branch(repo_id, branch=branch, repo_type="dataset", exist_ok=True)

    with push.step("uploading the dataset files"):
        api.upload_folder(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=root,
            revision=revision,
            allow_patterns=list(UPLOAD_ALLOW_PATTERNS),
            ignore_patterns=list(UPLOAD_EXCLUDE_PATTERNS),
            commit_message=commit_message or f"openk: upload {root.name}",
        )
    with push.step("writing the dataset card"):
        card = dataset_card(info, repo_id, tags=list(tags or ()), license=license)
        commit = api.upload_file(
            path_or_fileobj=card.encode("utf-8"),
            path_in_repo="README.md",
            repo_id=repo_id,
            repo_type="dataset",
            revision=revision,
            commit_message="openk: dataset card",
        )
    with push.step("checking the upload"):
        remote = {
            entry.path: getattr(entry, "size", None)
            for entry in api.list_repo_tree(
                repo_id, recursive=True, revision=commit.oid, repo_type="dataset"
            )
        }
    wrong = [rel for rel in files if remote.get(rel) != (root / rel).stat().st_size]
    if wrong:
        # The tag is only moved onto a complete upload; lerobot would load a broken copy.
        shown = ", ".join(wrong[:5]) + (f" and {len(wrong) - 5} more" if len(wrong) > 5 else "")
        raise push.fail(f"the Hub copy is missing or has the wrong size for {shown}")
    if tag_version:
        with push.step(f"tagging {version}"):
            # The tag marks a complete upload, so it moves only after everything else landed.
            with contextlib.suppress(RevisionNotFoundError):
                api.delete_tag(repo_id, tag=version, repo_type="dataset")
            api.create_tag(repo_id, tag=version, revision=commit.oid, repo_type="dataset")
    logger.info("pushed %s to %s (%s)", root, repo_id, commit.commit_url)
    return PushResult(
        repo_id=repo_id,
        repo_url=str(repo_url),
        commit_oid=commit.oid,
        commit_url=commit.commit_url,
        tag=version if tag_version else "",
        private=is_private,
        files=(*files, "README.md"),
    )


def pull_dataset(
    repo_id: str,
    root: Path | str | None = None,
    *,
    revision: str = "v3.0",
    token: str | None = None,
    endpoint: str | None = None,
    allow_patterns: Sequence[str] | None = None,
) -> Path:
    """Download dataset ``repo_id`` at ``revision`` (default the ``v3.0`` tag); return its root.

    With ``root`` the files land there; without, in the huggingface_hub cache.
    """
    validate_repo_id(repo_id)
    from openk.dataset.layout import lock_dataset

    target = Path(root).expanduser().resolve() if root is not None else None

    # into a local root: its one writer meanwhile (the Hub cache is huggingface_hub's own)
    with contextlib.ExitStack() as locks:
        if target is not None:
            locks.enter_context(lock_dataset(target))
        path = _download(repo_id, revision, target, token, endpoint, allow_patterns)
    return Path(path)


def _download(
    repo_id: str,
    revision: str,
    target: Path | None,
    token: str | None,
    endpoint: str | None,
    allow_patterns: Sequence[str] | None,
) -> str:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RevisionNotFoundError

    try:
        path = snapshot_download(
            repo_id,
            repo_type="dataset",
            revision=revision,
            local_dir=target,
            token=token,
            endpoint=endpoint,
            allow_patterns=list(allow_patterns) if allow_patterns else None,
        )
    except RevisionNotFoundError as exc:
        raise HubError(
            f"{repo_id} has no revision {revision!r}; a dataset pushed with `openk push` is "
            f"tagged with its codebase version (e.g. v3.0) - push it again or pass revision="
        ) from exc
    except Exception as exc:  # every download failure becomes one error type with a cause
        raise HubError(
            f"download of {repo_id}@{revision} failed: {_scrub(_describe_failure(exc), token)}"
        ) from exc
    return str(path)


__all__ = [
    "DEFAULT_TAGS",
    "PENDING_COMMIT_LOG",
    "UPLOAD_ALLOW_PATTERNS",
    "UPLOAD_EXCLUDE_PATTERNS",
    "HubVisibilityWarning",
    "PushResult",
    "RepoIdError",
    "dataset_card",
    "files_to_upload",
    "local_root_for",
    "pull_dataset",
    "push_dataset",
    "read_info",
    "retry_command",
    "validate_repo_id",
]
