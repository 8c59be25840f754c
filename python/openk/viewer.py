"""`openk view`: a local web review of a dataset (starlette app, served by uvicorn).

The page lists the episodes with their quality flags, shows one episode's cameras in sync with
its state/action plots (plotly.js from the installed plotly package, served locally) and the
loop telemetry, and turns marked episodes into the exact `openk edit delete` command, which it
runs only on an explicit confirmation (POST, same-origin only). Video cameras play as <video>;
image cameras (PNG bytes in the parquet, datasets recorded without video) show the frame at the
cursor, one PNG per request from `/api/episode/{n}/image/{key}/{frame}`.

Only the dataset's own files are served: paths are resolved and must stay inside the dataset.
"""

from __future__ import annotations

import shlex
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from openk.dataset import meta
from openk.dataset.edit import Source, parse_episodes
from openk.dataset.features import camera_keys
from openk.dataset.quality import Thresholds, _matrix, episode_flags
from openk.dataset.reader import DatasetReader
from openk.errors import DatasetError, OpenKError

try:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.routing import Route
except ImportError as err:  # pragma: no cover - the message is the behaviour
    raise OpenKError(
        f"openk view needs the web extra ({err}); install it with pip install 'openk[view]'"
    ) from None


def plotly_js_path() -> Path:
    try:
        import plotly
    except ImportError as err:
        raise OpenKError(
            f"openk view needs plotly ({err}); install it with pip install 'openk[view]'"
        ) from None
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise OpenKError(f"{path} is missing from the plotly package; reinstall plotly")
    return path


class ViewState:
    """The dataset being reviewed; reloaded after an edit."""

    def __init__(self, root: Path, thresholds: Thresholds) -> None:
        self.root = root.resolve()
        self.thresholds = thresholds
        self.lock = threading.Lock()
        self.reload()

    def reload(self) -> None:
        self.source = Source(self.root)
        self.reader = DatasetReader(self.root)
        self.flags = episode_flags(self.source, self.thresholds)
        self.pngs: dict[tuple[int, str], list[bytes]] = {}

    def episode_pngs(self, episode: int, key: str) -> list[bytes]:
        """An image camera's PNGs for an episode, read once (one column read) and kept while
        that episode is the one viewed, so stepping through frames costs no parquet read."""
        with self.lock:
            cached = self.pngs.get((episode, key))
            if cached is None:
                cached = self.reader.image_pngs(episode, key)
                self.pngs = {k: v for k, v in self.pngs.items() if k[0] == episode}
                self.pngs[(episode, key)] = cached
            return cached

    def delete_command(self, episodes: list[int]) -> list[str]:
        return [
            "openk",
            "edit",
            "delete",
            str(self.root),
            "--episodes",
            ",".join(str(e) for e in sorted(set(episodes))),
        ]


def _json_error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def make_app(
    root: Path, *, thresholds: Thresholds | None = None, host: str = "127.0.0.1"
) -> Starlette:
    """The app; `host` is the address served, accepted (with loopback) in Host headers."""
    state = ViewState(Path(root), thresholds or Thresholds())
    allowed_hosts = {*LOOPBACK_NAMES, host}
    plotly_js = plotly_js_path()

    async def index(request: Request) -> HTMLResponse:
        from openk.viewer_page import PAGE

        return HTMLResponse(PAGE)

    async def plotly(request: Request) -> FileResponse:
        return FileResponse(plotly_js, media_type="application/javascript")

    async def dataset(request: Request) -> JSONResponse:
        src = state.source
        episodes = [
            {
                "episode_index": int(ep["episode_index"]),
                "length": int(ep["length"]),
                "duration_s": int(ep["length"]) / src.fps,
                "task": (ep.get("tasks") or [""])[0],
                "flags": state.flags[i],
            }
            for i, ep in enumerate(src.episodes)
        ]
        return JSONResponse(
            {
                "root": str(state.root),
                "fps": src.fps,
                "robot_type": src.info.get("robot_type"),
                "total_frames": sum(e["length"] for e in episodes),
                "cameras": camera_keys(src.features),
                "thresholds": state.thresholds.describe(),
                "episodes": episodes,
            }
        )

    async def episode(request: Request) -> JSONResponse:
        src = state.source
        try:
            e = int(request.path_params["n"])
        except ValueError:
            return _json_error("episode must be a number", 400)
        if not 0 <= e < src.total_episodes:
            return _json_error(f"episode {e} does not exist", 404)
        ep = src.episodes[e]
        plotted: list[str] = [k for k in ("observation.state", "action") if k in src.features]
        rows = src.rows(e, plotted)
        series: dict[str, Any] = {}
        for key in plotted:
            if key in src.features and key in rows.column_names:
                values = _matrix(rows, key)
                names = src.features[key].get("names") or [
                    f"{key}[{i}]" for i in range(values.shape[1])
                ]
                if isinstance(names, dict):
                    names = next(iter(names.values()))
                series[key] = {
                    "names": [str(n) for n in names],
                    "values": np.round(values.T, 6).tolist(),
                }
        videos = {}
        for key in src.video_keys():
            path = src.video_path(key, ep).resolve()
            videos[key] = {
                "url": "/files/" + str(path.relative_to(state.root)),
                "from": float(ep[f"videos/{key}/from_timestamp"]),
                "to": float(ep[f"videos/{key}/to_timestamp"]),
            }
        images = {
            key: {"url": f"/api/episode/{e}/image/{quote(key, safe='')}/"}
            for key in src.image_keys()
        }
        extra = src.extras.get(e) or {}
        return JSONResponse(
            {
                "episode_index": e,
                "length": int(ep["length"]),
                "fps": src.fps,
                "task": (ep.get("tasks") or [""])[0],
                "time": (np.arange(int(ep["length"])) / src.fps).round(6).tolist(),
                "series": series,
                "videos": videos,
                "images": images,
                "telemetry": (extra.get("metadata") or {}).get("openk_loop"),
                "repeated_frames": extra.get("repeated_frames"),
                "flags": state.flags[e],
            }
        )

    def image(request: Request) -> Response:  # sync: starlette runs it in a worker thread
        src = state.source
        key = request.path_params["key"]
        try:
            e = int(request.path_params["n"])
            i = int(request.path_params["i"])
        except ValueError:
            return _json_error("episode and frame must be numbers", 400)
        if not 0 <= e < src.total_episodes:
            return _json_error(f"episode {e} does not exist", 404)
        if key not in src.image_keys():
            return _json_error(
                f"{key!r} is not an image camera of this dataset "
                f"(image cameras: {', '.join(src.image_keys()) or 'none'})",
                404,
            )
        length = int(src.episodes[e]["length"])
        if not 0 <= i < length:
            return _json_error(
                f"frame {i} is not in episode {e} (it has frames 0..{length - 1})", 404
            )
        try:
            pngs = state.episode_pngs(e, key)
        except DatasetError as err:
            return _json_error(str(err), 500)
        if len(pngs) != length:
            return _json_error(
                f"episode {e} stores {len(pngs)} frames of {key}, not its length {length}; "
                "run openk verify on the dataset",
                500,
            )
        return Response(pngs[i], media_type="image/png", headers={"cache-control": "no-store"})

    async def files(request: Request) -> Response:
        rel = request.path_params["path"]
        target = (state.root / rel).resolve()
        if not target.is_relative_to(state.root) or not target.is_file():
            return _json_error("not a file of this dataset", 404)
        return FileResponse(target)

    async def command(request: Request) -> JSONResponse:
        try:
            episodes = parse_episodes(request.query_params.get("episodes", ""))
        except DatasetError as err:
            return _json_error(str(err), 400)
        return JSONResponse({"command": shlex.join(state.delete_command(episodes))})

    async def delete(request: Request) -> JSONResponse:
        origin = request.headers.get("origin")
        expected = f"{request.url.scheme}://{request.url.netloc}"
        if request.url.hostname not in allowed_hosts:  # DNS rebinding: a foreign Host name
            return _json_error(f"refused: host {request.url.hostname!r} is not served here", 403)
        if origin != expected:
            return _json_error(f"refused: origin {origin!r} is not this page ({expected})", 403)
        try:
            body = await request.json()
        except ValueError:
            return _json_error("the body must be JSON", 400)
        if body.get("confirm") is not True:
            return _json_error("refused: the deletion was not confirmed", 400)
        episodes = body.get("episodes")
        if not isinstance(episodes, list) or not all(isinstance(x, int) for x in episodes):
            return _json_error("episodes must be a list of episode numbers", 400)
        from openk.commands import edit

        lines: list[str] = []
        with state.lock:
            try:
                edit.delete(state.root, ",".join(map(str, episodes)), echo=lines.append)
            except DatasetError as err:
                return _json_error(str(err), 400)
            state.reload()
        return JSONResponse({"ok": True, "output": lines})

    routes = [
        Route("/", index),
        Route("/static/plotly.min.js", plotly),
        Route("/api/dataset", dataset),
        Route("/api/episode/{n}", episode),
        Route("/api/episode/{n}/image/{key}/{i}", image),
        Route("/api/command", command),
        Route("/api/delete", delete, methods=["POST"]),
        Route("/files/{path:path}", files),
    ]
    return Starlette(routes=routes)


def serve(
    root: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    open_browser: bool = True,
    echo: Any = print,
) -> None:
    """Serve the review page until interrupted."""
    try:
        import uvicorn
    except ImportError as err:
        raise OpenKError(
            f"openk view needs uvicorn ({err}); install it with pip install 'openk[view]'"
        ) from None
    if not meta.has_dataset(root):
        raise DatasetError(f"no dataset at {root} ({meta.INFO_PATH} missing); check the path")
    app = make_app(root, host=host)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)
    url = f"http://{host}:{port}/"
    echo(f"openk view: {root} at {url} (Ctrl+C stops)")
    if open_browser:
        import webbrowser

        threading.Timer(1.0, lambda: webbrowser.open(url)).start()
    server.run()
