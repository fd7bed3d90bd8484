"""Each launch is a profiler range naming optimizer, path, dtype and the switches that are on."""

import torch

import tritonopt


def test_launches_are_named_ranges_in_a_profile(cpu_path):
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Linear(4, 2)).double()
    optimizer = tritonopt.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    adamw = tritonopt.AdamW(torch.nn.Linear(3, 3).parameters(), amsgrad=True)
    for p in (*model.parameters(), *(p for g in adamw.param_groups for p in g["params"])):
        p.grad = torch.randn_like(p)
    with torch.profiler.profile() as profile:
        optimizer.step()
        optimizer.step()
        adamw.step()
    names = [event.name for event in profile.events() if event.name.startswith("tritonopt.")]
    assert names == [
        f"tritonopt.SGD/{cpu_path}/float64/nesterov",
        f"tritonopt.SGD/{cpu_path}/float64/nesterov",
        f"tritonopt.AdamW/{cpu_path}/float32/decoupled_weight_decay+amsgrad",
    ]
