"""One module per `openk` command; the device commands stand on `openk.session`.

- `record`: teleoperated episodes into a LeRobot dataset (episode decisions, writer, push).
- `teleoperate`: leader → follower without recording.
- `replay`: a recorded episode's actions sent back to the follower.
- `calibrate`: the calibration dialog (also run on connect by `--always_calibrate=true`).
- `rollout`: a trained policy in place of the leader (`openk.policy`), over the same session;
  `episodic` records through `record`.
- `edit`: dataset operations (delete, trim, split, retask, merge) on `openk.dataset.edit`.

The room left: `view` (a recorded episode shown, no devices, on `openk.dataset.reader`). A new
command gets its own module here and a few lines in `openk.cli` that parse its config and call
it (docs/architecture.md).
"""
