"""Live curves: a run's per-epoch row as TensorBoard scalars, in `<run folder>/tensorboard/` (suite switch
`tensorboard: true`), so `tensorboard --logdir results/<suite>` follows every run of a suite while it trains, on a
laptop or a cluster. The per-epoch table stays the record: the events are a view of it, written after each row (a
run resumed after a kill may write the epoch it was killed in twice; TensorBoard shows the later point).
Needs the `tensorboard` package (`pip install 'dapbench[tensorboard]'`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from dapbench.errors import TrainingError

FOLDER = "tensorboard"


class EpochBoard:
    """Writes each epoch's numeric columns as scalars at x = environment steps."""

    def __init__(self, run_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise TrainingError(f"the suite asks for TensorBoard events but it cannot be used here ({e}); install it "
                                "with `scripts/setup.sh tensorboard` (it pulls no torch) or set tensorboard: false"
                                ) from None
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / FOLDER))

    def write(self, row: dict[str, Any]) -> None:
        step = int(row["env_steps"])
        for k, v in row.items():
            if k in ("epoch", "epochs", "env_steps") or isinstance(v, bool) or not isinstance(v, int | float):
                continue
            if math.isfinite(v):
                self.writer.add_scalar(k, v, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
