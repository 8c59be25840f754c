"""`openk view`: review a dataset in the browser (`openk.viewer`), local or from the Hub."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from openk.errors import DatasetBusyError


def view(
    root: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    open_browser: bool = True,
    echo: Callable[[str], None] = click.echo,
) -> None:
    from openk.dataset.edit import finish_interrupted_edit
    from openk.viewer import serve

    try:
        did = finish_interrupted_edit(root)
    except DatasetBusyError as busy:  # read-only: shown as it is while the edit runs
        did = f"note: {busy.holder} is editing {root}; showing the dataset as it is now"
    if did:
        echo(did)
    serve(root, host=host, port=port, open_browser=open_browser, echo=echo)
