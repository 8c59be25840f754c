"""The one repo id rule for local datasets and the Hub.

A repo id is validated before any path is built from it, so `../x` or `/abs` can never leave
the dataset home, and a dataset recorded locally can always be pushed under the same id.
"""

from __future__ import annotations

import re

from openk.errors import RepoIdError

_REPO_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,94}[A-Za-z0-9]|[A-Za-z0-9]")
_FIX = "use the form namespace/name, e.g. my-user/openk_pick_place (letters, digits, - _ .)"


def validate_repo_id(repo_id: str) -> str:
    """Return `repo_id` if it is `namespace/name` as the Hub accepts it, else raise RepoIdError.

    Rejects path traversal (`..`), absolute paths, backslashes, whitespace and anything the
    Hub would refuse.
    """
    if not isinstance(repo_id, str):
        raise RepoIdError(f"repo id must be a string, got {type(repo_id).__name__}; {_FIX}")
    parts = repo_id.split("/")
    if len(parts) != 2:
        raise RepoIdError(f"repo id {repo_id!r} must have exactly one '/'; {_FIX}")
    for part in parts:
        if not _REPO_PART.fullmatch(part):
            raise RepoIdError(
                f"repo id {repo_id!r}: {part!r} must be 1-96 of letters, digits, '-', '_', '.'"
                f" and start and end with a letter or digit; {_FIX}"
            )
        if "--" in part or ".." in part:
            raise RepoIdError(f"repo id {repo_id!r} must not contain '--' or '..'; {_FIX}")
    if repo_id.endswith(".git"):
        raise RepoIdError(f"repo id {repo_id!r} must not end in '.git'; {_FIX}")
    return repo_id
