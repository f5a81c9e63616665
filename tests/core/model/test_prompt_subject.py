"""The prompt subject: a no-op while untrained (its pool starts as the average), its pool ignores padding and can
learn which token to read, it changes the pooled logits only, the retrieval fit trains it, config and LR multiplier."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from uninext_core.config import tiny
from uninext_core.model.build import build_model
from uninext_core.model.prompt_subject import PromptSubject
from uninext_core.model.retrieval import pool_prompt
from uninext_core.train.optim import OptimizerSettings, parameter_lr
from uninext_core.train.retrieval_fit import retrieval_prefixes


def tiny_with_prompt_subject(enabled: bool = True):
    """tiny (image model) with or without the prompt subject."""
    cfg = tiny(video=False)
    return cfg.replace(heads=dataclasses.replace(cfg.heads, prompt_subject=enabled))


def test_weights_are_a_distribution_over_the_valid_tokens_and_padding_never_leaks():
    torch.manual_seed(0)
    module = PromptSubject(text_dim=8, hidden_dim=16)
    prompt = torch.randn(2, 5, 8)
    mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    torch.testing.assert_close(module(prompt, mask), pool_prompt(prompt, mask))  # untrained: the average
    with torch.no_grad():
        module.score[2].weight.normal_()
    mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    weights = module.weights(prompt, mask)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2))
    assert weights[1].std() > 0.01
    assert torch.all(weights[0, 3:] == 0)
    changed = prompt.clone()
    changed[0, 3:] += 100.0  # padded tokens only
    torch.testing.assert_close(module(changed, mask)[0], module(prompt, mask)[0])
    empty = module(prompt, torch.zeros(2, 5, dtype=torch.bool))  # an all-padded prompt: finite, no NaN
    assert torch.isfinite(empty).all()
    with pytest.raises(ValueError, match="positive"):
        PromptSubject(text_dim=0)


def test_the_pool_learns_to_read_the_marked_token_wherever_it_stands():
    """The expression case in miniature: each prompt has one token whose feature marks it as the subject, at a random
    position among distractors; fitted to put its weight there, the pool finds it in prompts it never saw."""
    g = torch.Generator().manual_seed(0)
    marker = torch.randn(16, generator=g)

    def prompts(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = torch.randn(n, 6, 16, generator=g)
        where = torch.randint(0, 6, (n,), generator=g)
        tokens[torch.arange(n), where] += 2.0 * marker
        return tokens, where

    torch.manual_seed(0)
    module = PromptSubject(text_dim=16, hidden_dim=32)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    mask = torch.ones(64, 6, dtype=torch.bool)
    for _ in range(200):
        tokens, where = prompts(64)
        loss = -module.weights(tokens, mask)[torch.arange(64), where].clamp_min(1e-9).log().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    tokens, where = prompts(256)
    with torch.no_grad():
        weights = module.weights(tokens, torch.ones(256, 6, dtype=torch.bool))
    assert float((weights.argmax(-1) == where).float().mean()) > 0.95
    assert float(weights[torch.arange(256), where].mean()) > 0.8


def test_untrained_pool_changes_nothing_and_a_trained_one_changes_the_pooled_logits_only():
    torch.manual_seed(0)
    model = build_model(tiny_with_prompt_subject()).eval()
    without = build_model(tiny_with_prompt_subject(False)).eval()
    without.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("prompt_subject.")})
    images = torch.randn(2, 3, 96, 128)
    pixel_mask = torch.ones(2, 96, 128, dtype=torch.bool)
    tokens = model.text_encoder.tokenizer(["the red circle left of the blue star", "the star"], padding=True,
                                          return_tensors="pt")
    with torch.no_grad():
        prompt = model.encode_text(tokens["input_ids"], tokens["attention_mask"].bool())
        untrained = model(images, pixel_mask, prompt)
        reference = without(images, pixel_mask, prompt)
        torch.testing.assert_close(untrained.pooled_logits, reference.pooled_logits)
        model.prompt_subject.score[2].weight.normal_()
        raw = model(images, pixel_mask, prompt)
        assert not torch.allclose(raw.pooled_logits, untrained.pooled_logits, atol=1e-3)
        torch.testing.assert_close(raw.token_logits, untrained.token_logits)  # category scoring is untouched
        torch.testing.assert_close(raw.boxes_cxcywh, untrained.boxes_cxcywh)
        # what the retrieval fit computes from cached inputs is what the forward computes
        inputs = model.retrieval_inputs(images, pixel_mask, prompt)
        term = model.resample_term(inputs.hidden, inputs.boxes_cxcywh, inputs.memory)
        _, pooled = model.retrieval_logits(1, inputs.hidden, inputs.boxes_cxcywh, inputs.colour_samples,
                                           inputs.prompt, inputs.pooled_prompt, inputs.prompt_mask, resampled=term)
        torch.testing.assert_close(pooled, raw.pooled_logits)


def test_an_untrained_pool_gets_gradient_on_every_layer():
    """From the uniform start the pool's output layer gets gradient (a zero-initialised gate would have held it)."""
    torch.manual_seed(0)
    model = build_model(tiny_with_prompt_subject())
    images = torch.randn(1, 3, 96, 96)
    pixel_mask = torch.ones(1, 96, 96, dtype=torch.bool)
    tokens = model.text_encoder.tokenizer(["the red circle left of the star"], return_tensors="pt")
    prompt = model.encode_text(tokens["input_ids"], tokens["attention_mask"].bool())
    for layer in range(2):
        model.zero_grad()
        out = model(images, pixel_mask, prompt, targets=[torch.tensor([[0.5, 0.5, 0.2, 0.2]])])
        (out.layers.pooled_logits[layer] * torch.randn_like(out.layers.pooled_logits[layer])).sum().backward()
        assert float(model.prompt_subject.score[2].weight.grad.abs().sum()) > 0


def test_config_learning_rate_multiplier_and_retrieval_fit_prefix():
    model = build_model(tiny_with_prompt_subject())
    assert "prompt_subject." in retrieval_prefixes(model)
    assert build_model(tiny_with_prompt_subject(False)).prompt_subject is None
    settings = OptimizerSettings(base_lr=1e-4, prompt_subject_multiplier=10.0)
    assert parameter_lr("prompt_subject.gate", settings) == pytest.approx(1e-3)
    assert parameter_lr("prompt_subject.score.0.weight", settings) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="prompt_subject_multiplier must be >= 0"):
        OptimizerSettings(prompt_subject_multiplier=-1.0)


def test_weights_files_with_and_without_it_load(tmp_path, check_optional_part_files):
    """A file with the subject keeps it; a file written before it existed (the GPU fine-tune's) loads without it."""
    cfg = tiny_with_prompt_subject()
    check_optional_part_files(tmp_path, cfg, tiny_with_prompt_subject(False), "prompt_subject", "score.2.weight")
