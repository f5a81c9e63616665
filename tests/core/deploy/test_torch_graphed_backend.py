"""CUDA-graph torch backend: the traced forward it captures equals the eager forward on new inputs (checked on the
CPU, also with autocast traced in); the forward does nothing CUDA forbids during capture (checked on the CPU); CPU
devices are refused; on a GPU the replayed graph matches eager TorchBackend."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from uninext_core.deploy.backend import model_spec
from uninext_core.deploy.torch_backend import TorchBackend
from uninext_core.deploy.torch_graphed_backend import CudaGraphTorchBackend, trace_main_network
from uninext_core.model.build import build_model
from uninext_core.model.prompt_features import PromptFeatures


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("tiny").eval()


def inputs(seed: int, valid: tuple[int, int]):
    generator = torch.Generator().manual_seed(seed)
    pixel_mask = torch.zeros(1, 128, 160, dtype=torch.bool)
    pixel_mask[:, : valid[0], : valid[1]] = True
    return torch.randn(1, 3, 128, 160, generator=generator) * pixel_mask[:, None], pixel_mask


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_traced_forward_equals_eager_on_new_inputs(model, one_thread):
    with torch.no_grad():
        prompt = model.encode_text(*model.text_encoder.tokenize(["red circle. blue square"]))
    images, pixel_mask = inputs(1, (120, 150))
    traced = trace_main_network(model, (images, pixel_mask, prompt.hidden, prompt.mask))
    other_images, other_mask = inputs(2, (96, 160))  # other pixels and another valid region
    other_prompt = PromptFeatures(torch.randn_like(prompt.hidden), prompt.mask.roll(3, dims=1))
    with torch.no_grad():
        expected = model(other_images, other_mask, other_prompt)
        got = traced(other_images, other_mask, other_prompt.hidden, other_prompt.mask)
    for name, a, b in zip(expected._fields, expected, got, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=name)


class _CaptureUnsafeOps(TorchDispatchMode):
    """Records the ops that break CUDA graph capture: tensors made from host data (`torch.tensor(list)` dispatches
    `lift_fresh`, a pageable host-to-device copy on CUDA) and host synchronisations (`.item()`, `nonzero`)."""

    UNSAFE = ("aten.lift_fresh", "aten._local_scalar_dense", "aten.nonzero", "aten.masked_select")

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func).startswith(self.UNSAFE):
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_forward_is_capture_safe(model, one_thread):
    """The device run of 2026-11-28 failed capture on `torch.tensor(list, device=cuda)` in the forward; this finds
    such ops on the CPU, in the eager forward and in the traced graph that is captured."""
    with torch.no_grad():
        prompt = model.encode_text(*model.text_encoder.tokenize(["red circle. blue square"]))
    images, pixel_mask = inputs(1, (120, 150))
    recorder = _CaptureUnsafeOps()
    with torch.no_grad(), recorder:
        model(images, pixel_mask, prompt)
    assert recorder.seen == []
    traced = trace_main_network(model, (images, pixel_mask, prompt.hidden, prompt.mask))
    assert "aten::tensor" not in str(traced.graph)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_autocast_is_traced_into_the_graph(model, one_thread):
    with torch.no_grad():
        prompt = model.encode_text(*model.text_encoder.tokenize(["a car"]))
    images, pixel_mask = inputs(3, (128, 140))
    traced = trace_main_network(model, (images, pixel_mask, prompt.hidden, prompt.mask),
                                autocast_dtype=torch.bfloat16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = model(images, pixel_mask, prompt)
    with torch.no_grad():
        got = traced(images, pixel_mask, prompt.hidden, prompt.mask)  # no autocast here: the casts are recorded
    assert got[5].dtype == torch.bfloat16  # the controller's mask parameters come out of a bf16 matmul
    for a, b in zip(expected, got, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_cpu_device_is_refused(model):
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device, got device 'cpu'"):
        CudaGraphTorchBackend(model, spec=model_spec("tiny"), input_size=(128, 160), device="cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_replayed_graph_matches_eager_on_cuda(model):
    graphed = CudaGraphTorchBackend(model, spec=model_spec("tiny"), input_size=(128, 160), device="cuda")
    eager = TorchBackend(model, spec=model_spec("tiny"), device="cuda")
    prompt = eager.encode_text(model.text_encoder.tokenize(["red circle"]))
    for seed, valid in ((1, (120, 150)), (2, (64, 160))):
        images, pixel_mask = inputs(seed, valid)
        expected, got = eager.infer(images, pixel_mask, prompt), graphed.infer(images, pixel_mask, prompt)
        for name, a, b in zip(expected._fields, expected, got, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4, msg=name)
    assert list(graphed._captured) == [model_spec("tiny").max_text_tokens]  # the text bucket
