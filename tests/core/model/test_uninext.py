"""The assembled tiny model end to end: three prompt kinds, odd image sizes, train outputs, gradients, determinism."""

from __future__ import annotations

import copy

import pytest
import torch

from uninext_core.config import tiny
from uninext_core.model.build import build_model
from uninext_core.model.mask_head import dynamic_mask_logits, masks_for_queries
from uninext_core.model.outputs import RawOutputs, TrainOutputs
from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.model.uninext import Uninext

Q = 100  # tiny: num_queries


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def model() -> Uninext:
    torch.manual_seed(0)
    return build_model("tiny").eval()


def image_batch(batch: int, height: int, width: int, valid: list[tuple[int, int]], seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, height, width, generator=g)
    pixel_mask = torch.zeros(batch, height, width, dtype=torch.bool)
    for b, (h, w) in enumerate(valid):
        pixel_mask[b, :h, :w] = True
        images[b, :, h:] = 0.0
        images[b, :, :, w:] = 0.0
    return images, pixel_mask


def text_prompt(model: Uninext, texts: list[str]) -> PromptFeatures:
    tokens = model.text_encoder.tokenize(texts)
    return model.encode_text(tokens.input_ids, tokens.attention_mask)


def template_prompt(model: Uninext, batch: int) -> PromptFeatures:
    g = torch.Generator().manual_seed(5)
    crops = torch.randn(batch, 4, 128, 128, generator=g)
    padding = torch.zeros(batch, 128, 128, dtype=torch.bool)
    padding[:, :, 100:] = True
    return model.encode_template(crops, padding)


def check_raw(raw: RawOutputs, batch: int, tokens: int, height: int, width: int) -> None:
    h8, w8 = -(-height // 32) * 4, -(-width // 32) * 4
    assert raw.token_logits.shape == (batch, Q, tokens)
    assert raw.pooled_logits.shape == raw.iou_logits.shape == (batch, Q, 1)
    assert raw.boxes_cxcywh.shape == (batch, Q, 4)
    assert raw.embeddings.shape == (batch, Q, 128)
    assert raw.mask_params.shape == (batch, Q, 169)
    assert raw.mask_features.shape == (batch, 8, h8, w8)
    assert raw.mask_reference_px.shape == (batch, Q, 2)
    assert all(torch.isfinite(t).all() for t in raw)
    assert raw.boxes_cxcywh.min() >= 0 and raw.boxes_cxcywh.max() <= 1


@pytest.mark.parametrize("kind", ["category", "expression", "template"])
@pytest.mark.parametrize(("height", "width"), [(200, 296), (257, 170)])
def test_three_prompt_kinds_at_odd_sizes(model: Uninext, kind: str, height: int, width: int):
    with torch.no_grad():
        if kind == "category":
            prompt = text_prompt(model, ["person. bicycle. traffic light"])
        elif kind == "expression":
            prompt = text_prompt(model, ["the man on the left holding a red umbrella"])
        else:
            prompt = template_prompt(model, 1)
        images, pixel_mask = image_batch(2, height, width, [(height, width), (height - 37, width - 50)])
        raw = model(images, pixel_mask, prompt)  # one prompt, broadcast over the batch
        check_raw(raw, 2, prompt.hidden.shape[1], height, width)
        # Mask origins lie inside each image's un-padded extent (pixels).
        assert raw.mask_reference_px[1, :, 0].max() <= width - 50
        assert raw.mask_reference_px[1, :, 1].max() <= height - 37
        masks = masks_for_queries(raw, torch.topk(raw.pooled_logits[..., 0], 3).indices)
        assert masks.shape == (2, 3, raw.mask_features.shape[-2] * 2, raw.mask_features.shape[-1] * 2)


def test_eval_is_deterministic(model: Uninext):
    with torch.no_grad():
        prompt = text_prompt(model, ["dog. cat"])
        images, pixel_mask = image_batch(1, 224, 256, [(200, 256)], seed=1)
        first, second = model(images, pixel_mask, prompt), model(images, pixel_mask, prompt)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


def test_train_outputs_agree_with_raw_outputs_and_split_denoising(model: Uninext):
    with torch.no_grad():
        prompt = text_prompt(model, ["dog. cat"])
        images, pixel_mask = image_batch(2, 192, 224, [(192, 224), (150, 200)], seed=2)
        targets = [torch.tensor([[0.5, 0.5, 0.3, 0.4], [0.2, 0.3, 0.1, 0.2]]), torch.tensor([[0.6, 0.4, 0.2, 0.2]])]
        raw = model(images, pixel_mask, prompt)
        train = model(images, pixel_mask, prompt, targets=targets, generator=torch.Generator().manual_seed(0))
    assert isinstance(train, TrainOutputs)
    assert train.denoising.meta.max_gt == 2 and train.denoising.meta.num_groups == 30 // 2
    n_dn = train.denoising.meta.num_queries
    assert train.denoising.heads.boxes_cxcywh.shape == (2, 2, n_dn, 4)
    assert train.layers.token_logits.shape == (2, 2, Q, prompt.hidden.shape[1])
    assert train.encoder.logits.shape[-1] == 1
    assert train.encoder.boxes_cxcywh.shape[:2] == train.encoder.logits.shape[:2]
    # Denoising queries are invisible to the matching queries: the last layer equals the inference outputs.
    torch.testing.assert_close(train.layers.token_logits[-1], raw.token_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(train.layers.boxes_cxcywh[-1], raw.boxes_cxcywh, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(train.mask_params[-1], raw.mask_params, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(train.mask_reference_px[-1], raw.mask_reference_px, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(train.embeddings, raw.embeddings, rtol=1e-4, atol=1e-4)
    # Without denoising there are no denoising queries.
    with torch.no_grad():
        plain = model(images, pixel_mask, prompt, targets=targets, use_denoising=False)
    assert plain.denoising.meta.num_queries == 0


def test_every_trainable_parameter_gets_a_gradient(model: Uninext, unblock_zero_inits):
    model = unblock_zero_inits(copy.deepcopy(model).train())  # see tests/core/conftest.py
    images, pixel_mask = image_batch(2, 128, 160, [(128, 160), (100, 150)], seed=3)
    targets = [torch.tensor([[0.5, 0.5, 0.3, 0.4]]), torch.tensor([[0.3, 0.6, 0.2, 0.3], [0.7, 0.2, 0.2, 0.1]])]
    total = torch.zeros(())
    for prompt in (text_prompt(model, ["person. car", "a dog"]), template_prompt(model, 2)):
        out = model(images, pixel_mask, prompt, targets=targets)
        for heads in (out.layers, out.denoising.heads):
            total = total + sum(t.sum() for t in heads)
        total = total + out.encoder.logits.sum() + out.encoder.boxes_cxcywh.sum() + out.embeddings.sum()
        for layer in range(out.mask_params.shape[0]):
            total = total + dynamic_mask_logits(out.mask_features, out.mask_params[layer, :, :4],
                                                out.mask_reference_px[layer, :, :4]).sum()
    total.backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing = sorted(n for n, p in trainable.items() if p.grad is None)
    assert missing == []
    # Only the official ×0.0 path (transformer.resizer, kept for checkpoint parity) has an all-zero gradient.
    zero = sorted(n for n, p in trainable.items() if torch.count_nonzero(p.grad) == 0)
    assert zero == [n for n in sorted(trainable) if n.startswith("transformer.resizer.")]
    assert len(zero) == 4


def test_image_model_has_no_template_branch_and_empty_embeddings():
    torch.manual_seed(1)
    model = build_model(tiny(video=False)).eval()
    assert model.template_encoder is None and model.reid_head is None
    with pytest.raises(ValueError, match="no template encoder"):
        model.encode_template(torch.zeros(1, 4, 128, 128))
    with torch.no_grad():
        raw = model(*image_batch(1, 128, 160, [(128, 160)]), text_prompt(model, ["cat"]))
    assert raw.embeddings.shape == (1, Q, 0)


def test_bad_inputs_are_rejected(model: Uninext):
    images, pixel_mask = image_batch(2, 128, 128, [(128, 128), (128, 128)])
    prompt = PromptFeatures(torch.zeros(3, 4, 384), torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="prompt batch 3"):
        model(images, pixel_mask, prompt)
    with pytest.raises(ValueError, match="pixel_mask must be bool"):
        model(images, pixel_mask.float(), prompt)
    with pytest.raises(ValueError, match=r"images must be \(B, 3, H, W\)"):
        model(images[:, :2], pixel_mask, prompt)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning", "ignore::UserWarning")
def test_fixed_size_onnx_export_matches_eager(model: Uninext, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    with torch.no_grad():
        prompt = text_prompt(model, ["person. car"])

    class Exported(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, images, pixel_mask, hidden, mask):
            return tuple(self.model(images, pixel_mask, PromptFeatures(hidden, mask)))

    wrapper = Exported().eval()  # export traces the wrapper's mode
    images, pixel_mask = image_batch(1, 192, 256, [(170, 230)], seed=4)
    inputs = (images, pixel_mask, prompt.hidden, prompt.mask)
    names = ["images", "pixel_mask", "hidden", "mask"]
    path = tmp_path / "uninext_tiny.onnx"
    with torch.no_grad():
        torch.onnx.export(wrapper, inputs, str(path), opset_version=17, dynamo=False, input_names=names,
                          output_names=list(RawOutputs._fields))
        expected = wrapper(*inputs)
    got = onnxruntime.InferenceSession(str(path)).run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})
    for name, a, b in zip(RawOutputs._fields, got, expected, strict=True):
        assert a.shape == tuple(b.shape), name
        assert abs(a - b.numpy()).max() <= 1e-4 * max(1.0, float(b.abs().max())), name
