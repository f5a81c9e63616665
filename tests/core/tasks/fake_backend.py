"""A Backend that returns hand-built RawOutputs, counts encoder calls and draws masks from boxes.

Frames in these tests are 64×64 and the spec keeps them at that size (short side 64, max 64), so normalised boxes
times 64 are pixels of the frame and of the (unpadded) network input alike.

* `infer` returns `respond(prompt, call_index)` (a function the test sets) or the next item of `queue`.
* `encode_text` / `encode_template` return features whose every value is the call number (1, 2, ...), so a test can
  read back which encoding a prompt came from (`prompt.hidden[0, 0, 0]`, and for SOT/VOS concat prompts also the
  first value of the second half).
* `mask_logits` gives query q the logit `mask_params[0, q, 0]` on the stride-4 cells whose centre lies inside its box
  and -20 elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from uninext_core.deploy.backend import ModelSpec
from uninext_core.model.outputs import RawOutputs
from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.model.text_encoder import TokenizedText

SIZE = 64
TEXT_DIM = 8
TEMPLATE_SIZE = 16
TEMPLATE_TOKENS = (TEMPLATE_SIZE // 8) ** 2
EMBED_DIM = 4
MAX_TOKENS = 32

SPEC = ModelSpec(name="fake", pixel_mean=(0.0, 0.0, 0.0), pixel_std=(1.0, 1.0, 1.0), size_divisibility=32,
                 test_short_side=SIZE, test_max_size=SIZE, max_text_tokens=MAX_TOKENS, template_size=TEMPLATE_SIZE,
                 template_search_area_factor=2.0, num_queries=100, embedding_dim=EMBED_DIM, mask_dynamic_channels=8,
                 mask_dynamic_layers=3, mask_out_stride=4)


def logit(p: float) -> float:
    """Inverse sigmoid."""
    return math.log(p / (1.0 - p))


def make_raw(*, boxes_xyxy: Sequence[Sequence[float]], token_logits: np.ndarray | None = None,
             pooled: Sequence[float] | None = None, iou: Sequence[float] | None = None,
             embeddings: np.ndarray | None = None, mask_logit: Sequence[float] | None = None,
             tokens: int = MAX_TOKENS) -> RawOutputs:
    """Batch-1 RawOutputs of Q queries.

    Args:
        boxes_xyxy: Q boxes in pixels of the 64×64 frame.
        token_logits: (Q, T) logits (default -10).
        pooled: Q pooled-prompt probabilities (converted to logits; default 0.01).
        iou: Q IoU probabilities (converted to logits; default 0.99).
        embeddings: (Q, E) re-ID embeddings (default zeros).
        mask_logit: Q mask logits inside each box (default 10).
    """
    num = len(boxes_xyxy)
    boxes = torch.tensor(boxes_xyxy, dtype=torch.float32).reshape(num, 4) / SIZE
    cxcywh = torch.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                          boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], dim=1)
    tok = torch.full((num, tokens), -10.0) if token_logits is None else torch.as_tensor(token_logits).float()
    pooled_p = [0.01] * num if pooled is None else pooled
    iou_p = [0.99] * num if iou is None else iou
    emb = torch.zeros(num, EMBED_DIM) if embeddings is None else torch.as_tensor(embeddings).float()
    params = torch.zeros(num, 169)
    params[:, 0] = torch.tensor([10.0] * num if mask_logit is None else list(mask_logit))
    return RawOutputs(
        token_logits=tok[None],
        pooled_logits=torch.tensor([logit(p) for p in pooled_p])[None, :, None],
        iou_logits=torch.tensor([logit(p) for p in iou_p])[None, :, None],
        boxes_cxcywh=cxcywh[None],
        embeddings=emb[None],
        mask_params=params[None],
        mask_features=torch.zeros(1, 8, SIZE // 8, SIZE // 8),
        mask_reference_px=cxcywh[None, :, :2] * SIZE,
    )


class FakeBackend:
    """Backend contract with scripted outputs (see the module docstring)."""

    name = "fake"
    fixed_input_size: tuple[int, int] | None = None

    def __init__(self, *, spec: ModelSpec = SPEC) -> None:
        self.spec = spec
        self.device = torch.device("cpu")
        self.text_calls: list[TokenizedText] = []
        self.template_calls: list[torch.Tensor] = []
        self.infer_prompts: list[PromptFeatures] = []
        self.infer_sizes: list[tuple[int, int]] = []
        self.queue: list[RawOutputs] = []
        self.respond: Callable[[PromptFeatures, int], RawOutputs] | None = None
        self._encodings = 0

    def encode_text(self, tokens: TokenizedText) -> PromptFeatures:
        self.text_calls.append(tokens)
        self._encodings += 1
        hidden = torch.full((1, tokens.input_ids.shape[1], TEXT_DIM), float(self._encodings))
        return PromptFeatures(hidden, tokens.attention_mask.bool())

    def encode_template(self, crops: torch.Tensor, padding: torch.Tensor | None = None) -> PromptFeatures:
        assert crops.shape[1:] == (4, TEMPLATE_SIZE, TEMPLATE_SIZE), crops.shape
        self.template_calls.append(crops.clone())
        self._encodings += 1
        hidden = torch.full((crops.shape[0], TEMPLATE_TOKENS, TEXT_DIM), float(self._encodings))
        return PromptFeatures(hidden, torch.ones(crops.shape[0], TEMPLATE_TOKENS, dtype=torch.bool))

    def infer(self, images: torch.Tensor, pixel_mask: torch.Tensor, prompt: PromptFeatures) -> RawOutputs:
        self.infer_prompts.append(prompt)
        self.infer_sizes.append(tuple(images.shape[-2:]))
        if self.respond is not None:
            return self.respond(prompt, len(self.infer_prompts) - 1)
        if not self.queue:
            raise AssertionError("FakeBackend.infer called with nothing queued")
        return self.queue.pop(0)

    def mask_logits(self, raw: RawOutputs, query_idx: torch.Tensor) -> torch.Tensor:
        height, width = raw.mask_features.shape[-2] * 2, raw.mask_features.shape[-1] * 2
        centres_y = torch.arange(height, dtype=torch.float32) * 4 + 2
        centres_x = torch.arange(width, dtype=torch.float32) * 4 + 2
        out = torch.full((len(query_idx), height, width), -20.0)
        for row, q in enumerate(query_idx.tolist()):
            cx, cy, w, h = (raw.boxes_cxcywh[0, q] * SIZE).tolist()
            inside_y = (centres_y >= cy - h / 2) & (centres_y < cy + h / 2)
            inside_x = (centres_x >= cx - w / 2) & (centres_x < cx + w / 2)
            inside = inside_y[:, None] & inside_x[None, :]
            out[row][inside] = float(raw.mask_params[0, q, 0])
        return out


def frame(seed: int = 0, size: int = SIZE) -> np.ndarray:
    """A (size, size, 3) uint8 RGB noise frame."""
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


_TOKENIZER = None


def tokenizer():
    """The packaged MiniLM fast tokenizer (same uncased WordPiece vocabulary as bert-base-uncased), loaded once."""
    global _TOKENIZER
    if _TOKENIZER is None:
        from transformers import AutoTokenizer

        from uninext_core.model.text_encoder import packaged_minilm_path

        _TOKENIZER = AutoTokenizer.from_pretrained(str(packaged_minilm_path()), local_files_only=True)
    return _TOKENIZER
