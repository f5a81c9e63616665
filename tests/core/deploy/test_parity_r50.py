"""torch vs ONNX Runtime on the official r50 shapes (random bert-base weights) at a small input, 320×320, for the
three prompt kinds: category and expression text (T = 256), one template (T = 1024) and two templates (T = 2048).

The encoder's top-900 selection can order near-tied proposals differently in the two runtimes (with random weights,
neighbouring scores differ by as little as 5e-7). Queries are compared where the selection matches — same index,
same reference point (within 1e-2 px) and box (within 1e-4) — and the rest are counted; at most 1 % may differ.
Where every query matches, fp32 tolerances: logits / embeddings / mask parameters abs 1e-4, boxes abs 1e-4, mask
features abs 1e-4, mask reference 1e-2 px (measured: category prompt, all 900 matched, every output within 8e-5,
logits and mask parameters within 4e-6). Where some differ, the other queries attend to a different query set in
the decoder's self-attention, so their logits, embeddings and mask parameters move by about the swapped queries'
attention share (1/900 each) times their difference: measured up to 2.7e-4 on one machine and 1.4e-3 (mask
parameters, values up to 1.7) on another, both with 2 of 900 swapped for the expression prompt. Those outputs then
get abs 1e-2 (room for the up-to-9 swaps allowed); boxes and the mask reference keep their tolerances.
"""

from __future__ import annotations

import logging
import warnings

import pytest
import torch

from uninext_core.config import r50
from uninext_core.deploy.backend import model_spec
from uninext_core.deploy.onnx_export import export_onnx
from uninext_core.deploy.onnxruntime_backend import OnnxRuntimeBackend
from uninext_core.deploy.torch_backend import TorchBackend
from uninext_core.model.build import build_model
from uninext_core.model.outputs import RawOutputs
from uninext_core.model.prompt_features import PromptFeatures

pytestmark = pytest.mark.slow  # r50 export ≈ 3 min and ≈ 3 GB on one core
logger = logging.getLogger(__name__)
SIZE = 320
ATOL = {"token_logits": 1e-4, "pooled_logits": 1e-4, "iou_logits": 1e-4, "boxes_cxcywh": 1e-4, "embeddings": 1e-4,
        "mask_params": 1e-4, "mask_reference_px": 1e-2}
# Outputs that decoder self-attention mixes across queries, when some queries were selected differently.
ATOL_WITH_SWAPS = {"token_logits": 1e-2, "pooled_logits": 1e-2, "iou_logits": 1e-2, "embeddings": 1e-2,
                   "mask_params": 1e-2}


@pytest.fixture(scope="module")
def r50_backends(tmp_path_factory):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = r50()
    model = build_model(cfg, allow_random_text_init=True).eval()
    directory = tmp_path_factory.mktemp("r50_export")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(model, cfg, directory, image_size=(SIZE, SIZE))
    yield TorchBackend(model, spec=model_spec(cfg)), OnnxRuntimeBackend(directory, intra_op_threads=1)
    torch.set_num_threads(previous)


def compare_where_selection_matches(expected: RawOutputs, got: RawOutputs) -> int:
    """Assert the tolerances on queries whose selection matches; return how many queries differ."""
    same = (((expected.mask_reference_px - got.mask_reference_px).abs().amax(-1) <= 1e-2)
            & ((expected.boxes_cxcywh - got.boxes_cxcywh).abs().amax(-1) <= 1e-4))[0]
    tolerances = ATOL if bool(same.all()) else ATOL | ATOL_WITH_SWAPS
    for name, tolerance in tolerances.items():
        a, b = getattr(expected, name)[0, same], getattr(got, name)[0, same]
        error = (a - b).abs().max().item()
        assert error <= tolerance, f"{name}: {error:.2e} > {tolerance} on {int(same.sum())} matched queries"
    error = (expected.mask_features - got.mask_features).abs().max().item()
    assert error <= 1e-4, f"mask_features: {error:.2e}"
    return int((~same).sum())


def frame():
    generator = torch.Generator().manual_seed(11)
    pixel_mask = torch.zeros(1, SIZE, SIZE, dtype=torch.bool)
    pixel_mask[:, :, :288] = True  # a 320×288 frame letterboxed into 320×320
    return torch.randn(1, 3, SIZE, SIZE, generator=generator) * pixel_mask[:, None], pixel_mask


def test_r50_text_and_template_prompts_match(r50_backends, record_property):
    torch_backend, onnx_backend = r50_backends
    images, pixel_mask = frame()
    tokenizer_model = torch_backend.model.text_encoder
    differing = {}
    for kind, text in (("category", "person. bicycle. car. dog"), ("expression", "the dog behind the red car")):
        tokens = tokenizer_model.tokenize([text])
        expected_prompt, prompt = torch_backend.encode_text(tokens), onnx_backend.encode_text(tokens)
        assert torch.equal(prompt.mask, expected_prompt.mask)
        assert (prompt.hidden - expected_prompt.hidden).abs().max() <= 1e-3, kind
        differing[kind] = compare_where_selection_matches(torch_backend.infer(images, pixel_mask, expected_prompt),
                                                          onnx_backend.infer(images, pixel_mask, expected_prompt))
    crops = torch.randn(2, 4, 256, 256, generator=torch.Generator().manual_seed(12))
    expected_template, template = torch_backend.encode_template(crops), onnx_backend.encode_template(crops)
    assert template.hidden.shape == (2, 1024, 768)
    assert (template.hidden - expected_template.hidden).abs().max() <= 1e-3
    one = PromptFeatures(expected_template.hidden[:1], expected_template.mask[:1])
    two = one.concat(PromptFeatures(expected_template.hidden[1:], expected_template.mask[1:]))
    for kind, prompt in (("template", one), ("two templates", two)):
        differing[kind] = compare_where_selection_matches(torch_backend.infer(images, pixel_mask, prompt),
                                                          onnx_backend.infer(images, pixel_mask, prompt))
    record_property("queries_with_other_selection", differing)
    logger.warning("r50 torch vs onnxruntime: queries selected differently out of 900: %s", differing)
    assert all(count <= 9 for count in differing.values()), differing  # <= 1 % of 900
