"""`openk edit`: delete, trim, split, retask and merge datasets (`openk.dataset.edit`).

Without `--output` the edit is made in place, atomically; `--dry-run` prints what would change
and writes nothing. Every subcommand first finishes (or undoes) an edit a crash interrupted, and
holds the lock of each dataset it writes (`layout.lock_dataset`) from start to end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import click

from openk.dataset import edit as ops
from openk.dataset import layout
from openk.errors import DatasetError


@contextlib.contextmanager
def _writing(*roots: Path | None) -> Iterator[None]:
    """Holds the dataset lock of every dataset the edit writes (None: not written)."""
    with contextlib.ExitStack() as locks:
        for root in roots:
            if root is not None:
                locks.enter_context(layout.lock_dataset(root))
        yield


def _prepare(roots: Sequence[Path], echo: Callable[[str], None]) -> list[ops.Source]:
    sources = []
    for root in roots:
        did = ops.finish_interrupted_edit(root)
        if did:
            echo(did)
        sources.append(ops.Source(root))
    return sources


def _source(root: Path, output: Path | None, echo: Callable[[str], None]) -> ops.Source:
    """The one dataset an edit reads (an interrupted edit finished first), checked not to be
    `output`."""
    (src,) = _prepare([root], echo)
    if output is not None:
        ops.check_output_not_source(output, [src])
    return src


def _run(
    plan: ops.Plan,
    root: Path | None,
    output: Path | None,
    dry_run: bool,
    echo: Callable[[str], None],
) -> ops.BuildReport | None:
    echo(plan.describe())
    if dry_run:
        echo("dry run: nothing was written")
        return None
    if output is not None:
        report = ops.write_new(plan, output)
    else:
        assert root is not None
        report = ops.apply_in_place(plan, root)
    for line in report.lines():
        echo(line)
    return report


def delete(
    root: Path,
    episodes: str,
    *,
    output: Path | None = None,
    dry_run: bool = False,
    echo: Callable[[str], None] = click.echo,
) -> ops.BuildReport | None:
    with _writing(None if dry_run else output or root):
        src = _source(root, output, echo)
        plan = ops.plan_delete(src, ops.parse_episodes(episodes))
        return _run(plan, root, output, dry_run, echo)


def trim(
    root: Path,
    *,
    episode: int | None = None,
    start: float | None = None,
    end: float | None = None,
    idle: bool = False,
    idle_threshold: float | None = None,
    output: Path | None = None,
    dry_run: bool = False,
    echo: Callable[[str], None] = click.echo,
) -> ops.BuildReport | None:
    with _writing(None if dry_run else output or root):
        src = _source(root, output, echo)
        if idle:
            if episode is not None or start is not None or end is not None:
                raise DatasetError("--idle trims every episode; drop --episode/--start/--end")
            threshold = (
                idle_threshold if idle_threshold is not None else ops.default_idle_threshold(src)
            )
            plan = ops.plan_trim_idle(src, threshold)
        else:
            if idle_threshold is not None:
                raise DatasetError("--idle-threshold only applies with --idle")
            if episode is None:
                raise DatasetError("trim needs --episode N (with --start/--end), or --idle")
            plan = ops.plan_trim(src, episode, start, end)
        return _run(plan, root, output, dry_run, echo)


def split(
    root: Path,
    episodes: str,
    output: Path,
    *,
    dry_run: bool = False,
    echo: Callable[[str], None] = click.echo,
) -> tuple[ops.BuildReport, ops.BuildReport] | None:
    with _writing(*((None,) if dry_run else (root, output))):
        src = _source(root, output, echo)
        stay, moved = ops.plan_split(src, ops.parse_episodes(episodes))
        echo(moved.describe())
        echo(stay.describe())
        if dry_run:
            echo("dry run: nothing was written")
            return None
        # both datasets are built and verified, then both moves happen under one marker
        out_report, in_report = ops.apply_split(stay, moved, root, output)
    for line in out_report.lines() + in_report.lines():
        echo(line)
    return out_report, in_report


def retask(
    root: Path,
    episodes: str,
    task: str,
    *,
    output: Path | None = None,
    dry_run: bool = False,
    echo: Callable[[str], None] = click.echo,
) -> ops.BuildReport | None:
    with _writing(None if dry_run else output or root):
        src = _source(root, output, echo)
        plan = ops.plan_retask(src, ops.parse_episodes(episodes), task)
        return _run(plan, root, output, dry_run, echo)


def merge(
    roots: Sequence[Path],
    output: Path,
    *,
    dry_run: bool = False,
    echo: Callable[[str], None] = click.echo,
) -> ops.BuildReport | None:
    with _writing(None if dry_run else output):
        sources = _prepare(roots, echo)
        ops.check_output_not_source(output, sources)
        return _run(ops.plan_merge(sources), None, output, dry_run, echo)
