"""Training logs through accelerate's experiment trackers: TensorBoard by default (``<run>/tb``), Weights & Biases
when installed and asked for (``train.trackers: [tensorboard, wandb]``, project ``train.wandb_project``). Both
worlds log the same things: the metrics of every round and eval, and at every eval one sample grid per task (the
first eval images of the task, prompts in order, each tile scored), as Flow-GRPO / DiffusionNFT users expect.

Logging never touches random state, so a run's weights do not depend on which trackers are on."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .errors import UserError

TRACKERS = ("tensorboard", "wandb")
#: samples per grid and the smallest tile side (tiny images are upscaled, nearest neighbour, to stay readable)
GRID_SAMPLES = 16
MIN_TILE = 128


def sample_grid(images: torch.Tensor, n: int = GRID_SAMPLES, min_tile: int = MIN_TILE) -> np.ndarray:
    """The first ``n`` images [B, 3, H, W] in [0, 1] as one uint8 grid [H', W', 3] (ceil(sqrt(n)) columns,
    2 px padding), each tile upscaled by an integer factor to at least ``min_tile`` px."""
    from torchvision.utils import make_grid

    x = images[:n].detach().float().cpu().clamp(0, 1)
    scale = max(1, math.ceil(min_tile / max(1, min(x.shape[-2:]))))
    if scale > 1:
        x = torch.nn.functional.interpolate(x, scale_factor=scale, mode="nearest")
    grid = make_grid(x, nrow=math.ceil(math.sqrt(len(x))), padding=2, pad_value=1.0)
    return (grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def check_trackers(names: Sequence[str]) -> List[str]:
    """Validated tracker names; wandb must be installed when asked for (one line otherwise)."""
    for n in names:
        if n not in TRACKERS:
            raise UserError(f"train.trackers: unknown tracker {n!r} (choose from {', '.join(TRACKERS)})")
    if "wandb" in names:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise UserError("train.trackers: wandb is not installed (pip install wandb, or drop it from "
                            "train.trackers)") from None
    return list(dict.fromkeys(names))


class RunLogger:
    """The run's trackers (accelerate ``GeneralTracker`` objects), started lazily on the first log call."""

    def __init__(self, run_dir: Path, names: Sequence[str] = ("tensorboard",), project: str = "",
                 run_name: str = "", config: Optional[dict] = None):
        self.run_dir, self.names = Path(run_dir), check_trackers(names)
        self.project, self.run_name, self.config = project, run_name, config
        self._trackers = None

    @property
    def trackers(self):
        if self._trackers is None:
            from accelerate.tracking import TensorBoardTracker, WandBTracker

            self._trackers = []
            for n in self.names:
                t = (TensorBoardTracker("tb", str(self.run_dir)) if n == "tensorboard" else
                     WandBTracker(self.project or "opd-bench", name=self.run_name or self.run_dir.name,
                                  dir=str(self.run_dir), config=self.config))
                if hasattr(t, "start"):   # accelerate >= 1.2 starts trackers explicitly
                    t.start()
                self._trackers.append(t)
        return self._trackers

    def scalars(self, values: Dict[str, float], step: int) -> None:
        values = {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        if values:
            for t in self.trackers:
                t.log(values, step=step)

    def grids(self, grids: Dict[str, np.ndarray], step: int) -> None:
        """One image per key (HxWx3 uint8): TensorBoard ``add_images`` (NHWC), a wandb image list."""
        for t in self.trackers:
            if t.name == "tensorboard":
                t.log_images({k: g[None] for k, g in grids.items()}, step=step, dataformats="NHWC")
            else:
                t.log_images({k: [g] for k, g in grids.items()}, step=step)

    def close(self) -> None:
        for t in self._trackers or []:
            t.finish()
        self._trackers = None
