"""Policy inference beside the Rust loop: lerobot's policy in a thread of its own.

`LoadedPolicy` is lerobot's checkpoint, pre/post-processors and `select_action` (its chunk
queue included) — nothing of the policy math is re-implemented here. `PolicyRunner` calls it
as each new row reaches Python (the recorder's pump hands it to `ObservationTap`), on that
newest observation, and sends the action to the loop; torch releases the GIL while it computes,
and the loop never waits for it (a late action only means the loop keeps its last goal a little
longer; it is counted).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from openk.policy import PolicyError, require_lerobot
from openk.session import quietly, teardown

log = logging.getLogger("openk.policy")

Observation = dict[str, np.ndarray]


class LoadedPolicy:
    """A lerobot checkpoint ready for `select_action`, loaded with lerobot's own code."""

    def __init__(
        self,
        path: str,
        *,
        device: str | None = None,
        rename_map: Mapping[str, str] | None = None,
        task: str = "",
        robot_type: str = "",
    ) -> None:
        require_lerobot()
        import torch
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors

        # Leave a core to the control loop and the cameras: torch takes every core otherwise.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        torch.set_num_threads(max(1, min(torch.get_num_threads(), cores - 1)))
        cfg = PreTrainedConfig.from_pretrained(path)
        if device is not None:
            cfg.device = device
        cfg.pretrained_path = path
        self.device = torch.device(cfg.device or "cpu")
        policy = get_policy_class(cfg.type).from_pretrained(path, config=cfg)
        policy.to(self.device)
        policy.eval()
        self.policy = policy
        self.config = cfg
        self.preprocessor, self.postprocessor = make_pre_post_processors(
            policy_cfg=cfg,
            pretrained_path=path,
            preprocessor_overrides={
                "device_processor": {"device": str(self.device)},
                "rename_observations_processor": {"rename_map": dict(rename_map or {})},
            },
        )
        self.task = task
        self.robot_type = robot_type
        log.info("policy %s loaded from %s on %s", cfg.type, path, self.device)

    def reset(self) -> None:
        """Forget the action queue and any state (lerobot resets at each episode start)."""
        self.policy.reset()
        self.preprocessor.reset()
        self.postprocessor.reset()

    def predict(self, observation: Observation) -> np.ndarray:
        """One action for `observation` ({"observation.state": float32 [n],
        "observation.images.<cam>": uint8 HWC}) through lerobot's pipeline."""
        import torch
        from lerobot.policies.utils import prepare_observation_for_inference

        with torch.inference_mode():
            batch = prepare_observation_for_inference(
                dict(observation), self.device, self.task, self.robot_type
            )
            batch = self.preprocessor(batch)
            action = self.policy.select_action(batch)
            action = self.postprocessor(action)
        return np.asarray(action.squeeze(0).to("cpu").numpy(), dtype=np.float32)


class ObservationTap:
    """The newest state row and camera frames, shared between the pump and the policy thread."""

    def __init__(self, cameras: Sequence[str], state_key: str = "observation.state") -> None:
        # camera keys the policy reads, as the robot names them (observation.images.<name>)
        self.cameras = list(cameras)
        self.state_key = state_key
        self._lock = threading.Lock()
        # notified on each new row: what the policy thread waits on (GIL released)
        self._row = threading.Condition(self._lock)
        self._state: np.ndarray | None = None
        self._state_t_ns = 0
        self._frames: dict[str, np.ndarray] = {}
        self.rows_seen = 0
        # rows_seen when observe() last ran: rows past it are new to the policy
        self._rows_observed = 0
        # capture_time_ns of the row whose state the last observe() returned
        self.observed_t_ns = 0

    def clear_state(self) -> None:
        with self._lock:
            self._state = None

    def on_batch(self, batch: Any) -> None:
        """Keep the newest row's observation.state (a pyarrow Table or RecordBatch)."""
        if batch is None or batch.num_rows == 0:
            return
        column = batch.column(self.state_key)
        last = column[batch.num_rows - 1].as_py()
        t_ns = 0
        if "capture_time_ns" in batch.schema.names:
            t_ns = int(batch.column("capture_time_ns")[batch.num_rows - 1].as_py())
        state = np.asarray(last, dtype=np.float32)
        with self._lock:
            self._state = state
            self._state_t_ns = t_ns
            self.rows_seen += batch.num_rows
            self._row.notify_all()

    def on_frame(self, key: str, frame: np.ndarray) -> None:
        with self._lock:
            self._frames[key] = frame

    def wait_row(self, timeout_s: float) -> bool:
        """Whether a row arrived since the last observe(), waiting up to `timeout_s` for one
        (0: just look). The policy thread blocks here, the GIL released."""
        with self._row:
            return self._row.wait_for(lambda: self.rows_seen > self._rows_observed, timeout_s)

    def observe(self) -> Observation | None:
        """The newest observation, or None until a state row and every camera's frame exist.
        Either way the rows so far count as observed (`wait_row` then waits for the next)."""
        with self._lock:
            self._rows_observed = self.rows_seen
            if self._state is None:
                return None
            obs: Observation = {self.state_key: self._state}
            self.observed_t_ns = self._state_t_ns
            for key in self.cameras:
                frame = self._frames.get(key)
                if frame is None:
                    return None
                obs[key] = frame
            return obs


def _percentile_ms(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    return float(np.percentile(np.asarray(values), q)) * 1000.0


class PolicyRunner:
    """Runs `predict` on `observe()` in its own thread each time `wait_row` reports a new row,
    and hands the actions to `send`.

    Triggered by the rows themselves, not by a clock of its own, the policy always sees the
    newest observation (a timer beside the rows' clock takes the row before, up to a period
    old). Inactive between episodes (`pause`); `start_episode` resets the policy first. A
    failure (an exception, or a NaN/inf action) stops the runner and is kept in `error`;
    nothing more is sent, so the loop holds the last goal.
    """

    # How long one wait for a row lasts before the thread looks at pause/close again.
    WAIT_S = 0.1

    def __init__(
        self,
        predict: Callable[[Observation], np.ndarray],
        reset: Callable[[], None],
        observe: Callable[[], Observation | None],
        send: Callable[[Sequence[float]], None],
        *,
        wait_row: Callable[[float], bool],
        fps: float,
        action_names: Sequence[str],
        trace: Callable[[Observation, np.ndarray], None] | None = None,
    ) -> None:
        self._predict = predict
        self._trace = trace
        self._reset = reset
        self._observe = observe
        self._wait_row = wait_row
        self._send = send
        self.period_ns = round(1e9 / fps)
        self.action_names = list(action_names)
        self.error: BaseException | None = None
        self._active = threading.Event()
        self._closed = threading.Event()
        self._busy = threading.Lock()
        self._episode = 0
        self._stats_lock = threading.Lock()
        self._reset_stats()
        self._run_infer_s: list[float] = []
        self._run_late = 0
        self._run_sent = 0
        self._thread = threading.Thread(target=self._run, name="openk-policy", daemon=True)
        self._thread.start()

    def _reset_stats(self) -> None:
        self._infer_s: list[float] = []
        self._late = 0
        self._sent = 0
        self._waits = 0

    # --- control from the main thread ----------------------------------------------------

    def start_episode(self) -> None:
        with self._busy:
            with self._stats_lock:
                self._reset_stats()
            self._episode += 1
            self._active.set()

    def pause(self) -> None:
        """Stop sending; returns once no action is being computed or sent."""
        self._active.clear()
        with self._busy:
            pass

    def close(self) -> None:
        self._closed.set()
        self._active.set()  # wake the thread so it sees `closed`
        self._thread.join(timeout=10)

    # --- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as err:  # kept for the pump to raise; the loop holds
            self.error = err
            self._active.clear()
            log.error("policy stopped: %s", err)

    def _loop(self) -> None:
        episode = 0
        while not self._closed.is_set():
            if not self._active.wait(self.WAIT_S):
                continue
            with self._busy:
                if self._closed.is_set():
                    return
                if not self._active.is_set():
                    continue
                if self._episode != episode:
                    episode = self._episode
                    self._reset()
            # Blocks (GIL released) until the pump delivers a row; with a deadline, so pause
            # and close are seen even when no row comes.
            if not self._wait_row(self.WAIT_S):
                continue
            with self._busy:
                if not self._active.is_set() or self._episode != episode:
                    continue
                obs = self._observe()
                if obs is None:  # no state row this episode, or a camera frame missing yet
                    with self._stats_lock:
                        self._waits += 1
                    continue
                started = time.perf_counter()
                action = self._predict(obs)
                took = time.perf_counter() - started
                self._check(action)
                self._send([float(v) for v in action])
                if self._trace is not None:
                    self._trace(obs, action)
                # The action is meant for the row after the observed one: if that row is
                # already here, the loop held the last goal for it (late). Late ones do not pile
                # up: the next inference takes the newest row, skipping those missed.
                late = self._wait_row(0.0)
            with self._stats_lock:
                self._infer_s.append(took)
                self._run_infer_s.append(took)
                self._sent += 1
                self._run_sent += 1
                if late:
                    self._late += 1
                    self._run_late += 1

    def _check(self, action: np.ndarray) -> None:
        if action.shape != (len(self.action_names),):
            raise PolicyError(
                f"the policy returned an action of shape {list(action.shape)}; the robot takes "
                f"{len(self.action_names)} values ({', '.join(self.action_names)})"
            )
        bad = [n for n, v in zip(self.action_names, action, strict=True) if not math.isfinite(v)]
        if bad:
            raise PolicyError(
                f"the policy produced a non-finite action for {', '.join(bad)}; stopped it "
                "(the arm holds its last goal)"
            )

    # --- reports ---------------------------------------------------------------------------

    def stats(self, whole_run: bool = False) -> dict[str, Any]:
        """Inference time p50/p99 (ms), actions sent, late actions (of the episode or run)."""
        with self._stats_lock:
            infer = list(self._run_infer_s if whole_run else self._infer_s)
            late = self._run_late if whole_run else self._late
            sent = self._run_sent if whole_run else self._sent
        return {
            "policy_inference_p50_ms": round(_percentile_ms(infer, 50), 3),
            "policy_inference_p99_ms": round(_percentile_ms(infer, 99), 3),
            "policy_inference_max_ms": round(max(infer, default=0.0) * 1000, 3),
            "policy_actions": sent,
            "policy_late_actions": late,
        }


class PolicySession:
    """A native session whose follower is driven by a `PolicyRunner` (the `Session` protocol
    of the recorder: rows flow as in teleop recording, their action is what the arm was sent)."""

    def __init__(
        self,
        inner: Any,
        runner: PolicyRunner,
        tap: ObservationTap,
        trace: PolicyTrace | None = None,
    ) -> None:
        self.inner = inner
        self.runner = runner
        self.tap = tap
        self.trace = trace
        self.events: Any = None
        self._stopping = False
        # DAgger: hands the arm between the policy and the leader (None: no leader).
        self.toggle: Any = None
        # Called as each episode's recording starts (the tests' scripted handovers).
        self.on_episode_start: Callable[[], None] | None = None

    def bind_events(self, events: Any) -> None:
        """A policy failure then ends the episode as Esc does (its rows are kept) instead of
        raising from `read_batch`; the command raises `policy_error` once all is saved. With a
        leader, SPACE hands the arm to it and back."""
        self.events = events
        if self.toggle is not None and hasattr(events, "on_space"):
            events.on_space = self.toggle

    @property
    def policy_error(self) -> PolicyError | None:
        err = self.runner.error
        if err is None:
            return None
        if isinstance(err, PolicyError):
            return err
        return PolicyError(f"the policy failed: {type(err).__name__}: {err}")

    @property
    def schema(self) -> Any:
        return self.inner.schema

    @property
    def action_names(self) -> list[str]:
        return list(self.inner.action_names)

    def start_episode(self) -> None:
        self.tap.clear_state()
        self.inner.start_episode()
        if self.on_episode_start is not None:
            self.on_episode_start()
        if self.trace is not None:
            self.trace.new_episode()
        self.runner.start_episode()

    def end_episode(self) -> None:
        self.runner.pause()
        self.inner.end_episode()

    def read_batch(self, timeout_s: float) -> Any | None:
        failure = self.policy_error
        if failure is not None and not self._stopping:
            if self.events is None:
                raise failure
            self._stopping = True
            log.error("stopping: %s", failure)
            self.events.stop.set()
            self.events.exit_early.set()
        batch = self.inner.read_batch(timeout_s)
        if batch is not None:
            self.tap.on_batch(batch)
        return batch

    def telemetry(self) -> Any:
        """The loop's report (`openk._core.LoopTelemetry`)."""
        return self.inner.telemetry()

    def policy_stats(self) -> dict[str, Any]:
        """The policy's counters (actions, late actions, inference time), stored beside the
        loop's report in the episode metadata."""
        return dict(self.runner.stats())

    def send_action(self, values: Sequence[float]) -> None:
        self.inner.send_action(values)

    def close(self) -> None:
        teardown(
            self.runner.close,
            quietly(self.inner.close),
            None if self.trace is None else self.trace.save,
        )


class PolicyTrace:
    """Every observation the policy saw and the action it sent, saved as .npz on close (the
    `OPENK_POLICY_TRACE=<file>` hook the tests' lerobot oracle replays)."""

    def __init__(self, path: str, tap: ObservationTap) -> None:
        self.path = path
        self.tap = tap
        self.episode = -1
        self.rows: list[tuple[int, int, Observation, np.ndarray]] = []

    def new_episode(self) -> None:
        self.episode += 1

    def __call__(self, obs: Observation, action: np.ndarray) -> None:
        self.rows.append((self.episode, self.tap.observed_t_ns, dict(obs), action.copy()))

    def save(self) -> None:
        if not self.rows:
            return
        # Any: numpy's savez stub reads **kwargs as its allow_pickle flag.
        arrays: dict[str, Any] = {
            "episode": np.array([r[0] for r in self.rows], dtype=np.int64),
            "capture_time_ns": np.array([r[1] for r in self.rows], dtype=np.int64),
            "action": np.stack([r[3] for r in self.rows]),
        }
        for key in self.rows[0][2]:
            arrays[key] = np.stack([r[2][key] for r in self.rows])
        np.savez(self.path, **arrays)
