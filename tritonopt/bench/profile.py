"""``--profile``: a torch.profiler Chrome trace of a few steps per case and implementation.

Each step runs inside a ``record_function`` range (and an NVTX range on CUDA)
named ``<optimizer>/<implementation>/<case>``, so it stands out in the trace
viewer and in Nsight Systems.
"""

import contextlib
from pathlib import Path

import torch
from torch.profiler import profile

from . import counters, timing
from .cases import Case
from .implementations import Implementation
from .run import build_instance

STEPS = 3


def write_trace(path: Path, cases: list[Case], implementations: list[Implementation], device: torch.device) -> None:
    with profile(activities=counters.activities(device)) as prof:
        for case in cases:
            for implementation in implementations:
                if implementation.unavailable(case, device):
                    continue
                instance = build_instance(case, implementation, device, warmup=2)
                name = f"{case.optimizer.name}/{implementation.name}/{case.name}"
                for _ in range(STEPS):
                    nvtx = torch.cuda.nvtx.range(name) if device.type == "cuda" else contextlib.nullcontext()
                    instance.before_step()
                    with nvtx, torch.profiler.record_function(name):
                        instance.step()
                timing.synchronize(device)
    prof.export_chrome_trace(str(path))
