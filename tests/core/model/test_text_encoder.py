from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from uninext_core.config import TextEncoderConfig, r50
from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.model.text_encoder import TextEncoder, build_text_encoder, packaged_minilm_path

# The packaged MiniLM with the official 256-token budget, trainable (tiny itself uses 64 tokens, frozen).
MINILM_256 = TextEncoderConfig(path=None, hidden_dim=384, max_tokens=256, frozen=False)

STATE_DICTS = Path(__file__).resolve().parents[2] / "data" / "official_state_dicts"


@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    torch.manual_seed(0)
    return build_text_encoder(MINILM_256).eval()


def test_tokenize_pads_to_max_tokens_with_bert_uncased_ids(minilm):
    tokens = minilm.tokenize(["person. bicycle", "A red car"])
    assert tokens.input_ids.shape == (2, 256) and tokens.input_ids.dtype == torch.int64
    assert tokens.attention_mask.shape == (2, 256) and tokens.attention_mask.dtype == torch.int64
    # bert-base-uncased vocabulary: [CLS]=101, person=2711, .=1012, bicycle=10165, [SEP]=102; a=1037 red=2417 car=2482
    assert tokens.input_ids[0, :6].tolist() == [101, 2711, 1012, 10165, 102, 0]
    assert tokens.input_ids[1, :6].tolist() == [101, 1037, 2417, 2482, 102, 0]
    assert tokens.attention_mask.sum(dim=1).tolist() == [5, 5]


def test_tokenize_truncates_long_text_and_keeps_sep(minilm):
    tokens = minilm.tokenize(["cat " * 400])
    assert tokens.input_ids.shape == (1, 256)
    assert tokens.attention_mask.sum().item() == 256
    assert tokens.input_ids[0, -1].item() == 102


def test_tokenize_rejects_single_string(minilm):
    with pytest.raises(ValueError, match="sequence of strings"):
        minilm.tokenize("person")


def test_forward_returns_last_hidden_layer_and_bool_mask(minilm):
    tokens = minilm.tokenize(["person. bicycle", "a red car"])
    with torch.no_grad():
        features = minilm(*tokens)
    assert isinstance(features, PromptFeatures)
    assert features.hidden.shape == (2, 256, 384)
    assert features.mask.dtype == torch.bool
    assert torch.equal(features.mask, tokens.attention_mask.bool())
    # Golden values of the packaged all-MiniLM-L6-v2 weights (first 4 features of [CLS] and "person").
    expected = torch.tensor([[0.0306, 0.6460, 0.0172, -0.2462], [-0.9392, 0.4258, -0.3151, -0.7906]])
    assert torch.allclose(features.hidden[0, :2, :4], expected, atol=1e-3)


def test_valid_tokens_do_not_depend_on_padding_length(minilm):
    tokens = minilm.tokenize(["person. bicycle"])
    with torch.no_grad():
        full = minilm(*tokens).hidden
        short = minilm(tokens.input_ids[:, :8], tokens.attention_mask[:, :8]).hidden
    assert torch.allclose(full[:, :5], short[:, :5], atol=1e-5)


def test_frozen_flag_stops_gradients():
    frozen = build_text_encoder(dataclasses.replace(MINILM_256, frozen=True))
    assert not any(p.requires_grad for p in frozen.parameters())
    trainable = build_text_encoder(MINILM_256)
    assert all(p.requires_grad for p in trainable.parameters())


def test_explicit_path_loads_folder_and_checks_width():
    folder = str(packaged_minilm_path())
    encoder = build_text_encoder(dataclasses.replace(MINILM_256, path=folder, max_tokens=32))
    assert encoder.hidden_dim == 384 and encoder.max_tokens == 32
    with pytest.raises(ValueError, match="hidden size 384"):
        build_text_encoder(dataclasses.replace(r50().text, path=folder))


def test_missing_folder_is_named_in_error(tmp_path):
    missing = tmp_path / "no-such-bert"
    with pytest.raises(ValueError, match="no-such-bert"):
        build_text_encoder(dataclasses.replace(r50().text, path=str(missing)))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty"):
        build_text_encoder(dataclasses.replace(r50().text, path=str(empty)))


def test_official_preset_without_path_needs_local_bert():
    with pytest.raises(ValueError, match=r"set text\.path"):
        build_text_encoder(r50().text)


def test_random_init_has_bert_base_uncased_shapes():
    torch.manual_seed(0)
    encoder = build_text_encoder(r50().text, allow_random_init=True)
    assert encoder.hidden_dim == 768 and encoder.max_tokens == 256
    ours = {k: tuple(v.shape) for k, v in encoder.model.named_parameters()}
    path = STATE_DICTS / "sd_vid_r50.tsv"
    prefix = "text_encoder.body.model."
    official = {}
    for line in path.read_text().splitlines():
        key, shape, dtype = line.split("\t")
        if key.startswith(prefix) and dtype != "torch.int64":  # skip the position_ids buffer
            official[key[len(prefix):]] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    assert ours == official
    tokens = encoder.tokenize(["person"])
    assert tokens.input_ids[0, :3].tolist() == [101, 2711, 102]


def test_bert_overrides_only_for_random_init():
    with pytest.raises(ValueError, match="overrides"):
        build_text_encoder(MINILM_256, num_hidden_layers=1)
    small = build_text_encoder(r50().text, allow_random_init=True, num_hidden_layers=1)
    assert len(small.model.encoder.layer) == 1


class _ExportWrapper(torch.nn.Module):
    """PromptFeatures -> plain tuple for torch.onnx.export."""

    def __init__(self, encoder: TextEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.encoder(input_ids, attention_mask)
        return features.hidden, features.mask


# TracerWarnings: shape-only checks inside transformers, constant at the fixed max_tokens.
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning", "ignore::torch.jit.TracerWarning")
def test_onnx_export_matches_torch_on_another_prompt(minilm):
    import io

    import onnxruntime as ort

    wrapper = _ExportWrapper(minilm).eval()
    buffer = io.BytesIO()
    torch.onnx.export(wrapper, tuple(minilm.tokenize(["person. bicycle"])), buffer, input_names=["input_ids",
                      "attention_mask"], output_names=["hidden", "mask"], opset_version=17, dynamo=False)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    tokens = minilm.tokenize(["the man on the left holding a red umbrella"])
    hidden, mask = session.run(None, {"input_ids": tokens.input_ids.numpy(),
                                      "attention_mask": tokens.attention_mask.numpy()})
    with torch.no_grad():
        expected = minilm(*tokens)
    assert mask.dtype == bool and (mask == expected.mask.numpy()).all()
    assert torch.allclose(torch.from_numpy(hidden), expected.hidden, atol=1e-3)
