"""The embedded domains carry a real shift: a model good in-domain falls on the others."""

import pytest
import torch

from benchmark.data.domains import load_domain
from benchmark.data.setting import Part
from benchmark.data.tensors import DeviceSplit
from benchmark.methods.source_only import SourceOnly
from benchmark.models import create_backbone
from benchmark.run.evaluate import accuracy
from benchmark.run.fastpath import FastPath
from benchmark.run.train import TrainData, fit
from benchmark.suite.config import BackboneSpec, Recipe


def split(name: str, part: str) -> DeviceSplit:
    arrays = load_domain(name)
    images, labels = getattr(arrays, f"{part}_images"), getattr(arrays, f"{part}_labels")
    return DeviceSplit.from_numpy(images, labels, torch.device("cpu"), 32)


@pytest.mark.long
def test_a_cnn_trained_on_mnist_falls_on_the_other_domains():
    torch.manual_seed(0)
    fast = FastPath.for_device(torch.device("cpu"), "auto")  # trained as a run trains it
    model = fast.prepare(create_backbone(BackboneSpec(name="lenet"), 10))
    data = TrainData(sources=[Part("mnist", "mnist", split("mnist", "train"))])
    recipe = Recipe(epochs=2, batch_size=64, lr=0.003)
    method = SourceOnly("source_only")
    fit(
        model,
        None,
        method,
        data,
        recipe,
        torch.Generator(),
        "shift",
        select=False,
        progress=False,
        fast=fast,
    )
    in_domain = accuracy(model, split("mnist", "test"))
    assert in_domain > 0.93
    for other in ("mnistm", "syndigits"):
        assert accuracy(model, split(other, "test")) < in_domain - 0.3, other
