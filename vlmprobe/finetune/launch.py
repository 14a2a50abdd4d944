"""Make ``accelerate launch --cpu --num_processes N recipe.py ...`` start N processes: the
recipe calls ``relaunch_cpu_processes()`` first (the mechanism lives in
``vlmprobe.distributed``, shared with ``accelerate launch -m vlmprobe ...``)."""
from __future__ import annotations

from ..distributed import relaunch_cpu_processes, requested_processes

__all__ = ["relaunch_cpu_processes", "requested_processes"]
