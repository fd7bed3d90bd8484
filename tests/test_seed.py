"""The seed tutorial's scenario (shared/seeds/optimizer-tutorial.md), checked against torch."""

import copy

import torch
from torch import nn

import tritonopt
from tritonopt.models import LeNet

from tritonopt.testing import assert_optimizers_match


def _pair():
    torch.manual_seed(0)
    net = LeNet()
    return net, copy.deepcopy(net)


def _train(pairs, steps, seed):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(2, 3, 32, 32, generator=generator)
        for net, optimizer in pairs:
            optimizer.zero_grad()
            out = net(x)
            out.backward(out)  # the tutorial's fake backward
            optimizer.step()


def _special_layer_groups(net):
    special_layers = nn.ModuleList([net.classifier[0], net.classifier[3]])
    special_layers_params = list(map(id, special_layers.parameters()))
    base_params = filter(lambda p: id(p) not in special_layers_params, net.parameters())
    return [{"params": base_params}, {"params": special_layers.parameters(), "lr": 0.01}]


def test_one_lr_for_everything(cpu_path):
    net, twin = _pair()
    candidate = tritonopt.SGD(params=net.parameters(), lr=1)
    reference = torch.optim.SGD(params=twin.parameters(), lr=1)
    _train([(net, candidate), (twin, reference)], 2, seed=1)
    assert_optimizers_match(reference, candidate, "lr=1")


def test_per_subnet_learning_rates_and_decay_through_param_groups(cpu_path):
    net, twin = _pair()
    candidate, reference = (
        cls([{"params": n.features.parameters()}, {"params": n.classifier.parameters(), "lr": 1e-2}], lr=1e-5)
        for cls, n in ((tritonopt.SGD, net), (torch.optim.SGD, twin))
    )
    assert repr(candidate) == repr(reference)
    _train([(net, candidate), (twin, reference)], 2, seed=2)
    for optimizer in (candidate, reference):
        for param_group in optimizer.param_groups:
            param_group["lr"] *= 0.1
    assert [g["lr"] for g in candidate.param_groups] == [1.0000000000000002e-06, 0.001]
    assert repr(candidate) == repr(reference)
    _train([(net, candidate), (twin, reference)], 2, seed=3)
    assert_optimizers_match(reference, candidate, "after decay")


def test_special_layers_by_id(cpu_path):
    net, twin = _pair()
    candidate = tritonopt.SGD(_special_layer_groups(net), lr=1e-5)
    reference = torch.optim.SGD(_special_layer_groups(twin), lr=1e-5)
    assert repr(candidate) == repr(reference)
    # As in the seed, classifier[3] is a ReLU: only the first Linear is "special".
    assert [len(g["params"]) for g in candidate.param_groups] == [8, 2]
    _train([(net, candidate), (twin, reference)], 3, seed=4)
    assert_optimizers_match(reference, candidate, "special layers")


def test_rebuilt_optimizer(cpu_path):
    net, twin = _pair()
    old_lr = 0.01
    candidate, reference = (
        cls([{"params": n.features.parameters()}, {"params": n.classifier.parameters(), "lr": 0.1 * old_lr}], lr=1e-5)
        for cls, n in ((tritonopt.SGD, net), (torch.optim.SGD, twin))
    )
    assert repr(candidate) == repr(reference)
    _train([(net, candidate), (twin, reference)], 2, seed=5)
    assert_optimizers_match(reference, candidate, "rebuilt optimizer")
