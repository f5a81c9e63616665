"""The query relation: a no-op when untrained, which inputs reach each query (other boxes, valid prompt tokens, the
denoising mask), it learns an ordinal a per-query head cannot, config and weights files, the LR multiplier, ONNX."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from uninext_core.config import r50, tiny
from uninext_core.model.build import build_model
from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.model.query_relation import QueryRelation, representatives
from uninext_core.train.optim import OptimizerSettings, parameter_lr


def tiny_with_query_relation(layers: int = 1):
    cfg = tiny(video=False)
    return cfg.replace(heads=dataclasses.replace(cfg.heads, query_relation_layers=layers))


def trained_module(seed: int = 0, **kwargs) -> QueryRelation:
    torch.manual_seed(seed)
    module = QueryRelation(d_model=16, text_dim=12, num_layers=2, num_heads=4, dim_feedforward=32, **kwargs).eval()
    with torch.no_grad():
        module.out_proj.weight.normal_()
    return module


def inputs(batch: int = 2, queries: int = 5, tokens: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, tokens, dtype=torch.bool)
    mask[0, -1] = False
    return (torch.randn(batch, queries, 16, generator=g), torch.rand(batch, queries, 4, generator=g),
            torch.randn(batch, tokens, 12, generator=g), mask)


def test_untrained_term_is_zero_gradients_reach_the_layers_not_the_boxes():
    module = QueryRelation(d_model=16, text_dim=12, num_layers=1, num_heads=4)
    queries, boxes, prompt, mask = inputs()
    boxes.requires_grad_(True)
    out = module(queries, boxes, prompt, mask)
    assert out.shape == (2, 5, 16) and torch.equal(out, torch.zeros_like(out))
    (out * torch.randn_like(out)).sum().backward()
    assert module.out_proj.weight.grad.abs().sum() > 0
    assert boxes.grad is None


def test_each_query_sees_the_other_boxes_and_the_valid_prompt_tokens_only():
    module = trained_module()
    queries, boxes, prompt, mask = inputs()
    with torch.no_grad():
        base = module(queries, boxes, prompt, mask)
        moved = boxes.clone()
        moved[:, 3] = torch.tensor([0.9, 0.1, 0.05, 0.3])  # another query's box only
        assert not torch.allclose(module(queries, moved, prompt, mask)[:, 0], base[:, 0])
        other_words = prompt.clone()
        other_words[:, 0] += 1.0
        assert not torch.allclose(module(queries, boxes, other_words, mask), base)
        padded = prompt.clone()
        padded[0, -1] = 100.0  # a padded token of image 0
        assert torch.equal(module(queries, boxes, padded, mask)[0], base[0])


def test_a_prompt_without_valid_tokens_gives_finite_values():
    queries, boxes, prompt, mask = inputs()
    with torch.no_grad():
        out = trained_module()(queries, boxes, prompt, torch.zeros_like(mask))
    assert torch.isfinite(out).all()


def test_the_denoising_mask_hides_the_blocked_queries():
    module = trained_module()
    queries, boxes, prompt, mask = inputs()
    blocked = torch.zeros(5, 5, dtype=torch.bool)
    blocked[2:, :2] = True  # queries 2.. (the matching part) must not see 0..1 (a denoising group)
    with torch.no_grad():
        base = module(queries, boxes, prompt, mask, blocked)
        moved = boxes.clone()
        moved[:, :2] = 0.5
        changed = module(queries, moved, prompt, mask, blocked)
    assert torch.equal(changed[:, 2:], base[:, 2:])
    assert not torch.allclose(changed[:, :2], base[:, :2])


def test_it_learns_to_pick_the_second_from_the_left_which_a_per_query_head_cannot():
    """The ordinal case that the 2-layer `tiny` decoder misses most: among 6 identical queries at random x, score the
    second from the left highest. A per-query head sees one box at a time, so its top-1 is some fixed rank by x."""
    torch.manual_seed(0)
    num_queries, d = 6, 16

    def batch(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        boxes = torch.cat([torch.rand(n, num_queries, 2, generator=g), torch.full((n, num_queries, 2), 0.1)], -1)
        return boxes, boxes[..., 0].argsort(-1)[:, 1]

    relation = QueryRelation(d_model=d, text_dim=d, num_layers=2, num_heads=4, dim_feedforward=32)
    per_query = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, d))
    score_relation, score_per_query = nn.Linear(d, 1), nn.Linear(d, 1)
    prompt, mask = torch.zeros(1, 1, d), torch.ones(1, 1, dtype=torch.bool)

    def logits_relation(boxes: torch.Tensor) -> torch.Tensor:
        n = boxes.shape[0]
        term = relation(torch.zeros(n, num_queries, d), boxes, prompt.expand(n, -1, -1), mask.expand(n, -1))
        return score_relation(term)[..., 0]

    def logits_per_query(boxes: torch.Tensor) -> torch.Tensor:
        return score_per_query(per_query(boxes))[..., 0]

    g = torch.Generator().manual_seed(1)
    for forward, parameters in ((logits_relation, [*relation.parameters(), *score_relation.parameters()]),
                                (logits_per_query, [*per_query.parameters(), *score_per_query.parameters()])):
        optimizer = torch.optim.Adam(parameters, lr=3e-3)
        for _ in range(400):
            boxes, target = batch(128, g)
            loss = nn.functional.cross_entropy(forward(boxes), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    test_boxes, test_target = batch(1000, torch.Generator().manual_seed(2))
    with torch.no_grad():
        relation_accuracy = (logits_relation(test_boxes).argmax(-1) == test_target).float().mean().item()
        per_query_accuracy = (logits_per_query(test_boxes).argmax(-1) == test_target).float().mean().item()
    assert relation_accuracy >= 0.9, relation_accuracy
    assert per_query_accuracy <= 0.6, per_query_accuracy


def test_representatives_keep_the_best_scored_query_of_each_object():
    boxes = torch.tensor([[[0.3, 0.3, 0.2, 0.2], [0.31, 0.3, 0.2, 0.2], [0.3, 0.31, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2],
                           [0.36, 0.3, 0.2, 0.2]]])
    scores = torch.tensor([[0.5, 0.9, 0.9, -3.0, 2.0]])
    # query 4 leads the cluster (IoU with 0-2 above 0.5); 0-2 are its copies; 3 is alone
    assert representatives(boxes, scores, 0.5).tolist() == [[False, False, False, True, True]]
    # at a stricter threshold query 4 (IoU 0.56-0.64 with the others) no longer covers 0-2: of those, the tie 1 = 2
    # goes to the lower index, and 0 is 1's copy
    assert representatives(boxes, scores, 0.7).tolist() == [[False, True, False, True, True]]


def test_with_dedup_no_query_sees_a_copy_and_scores_are_required():
    torch.manual_seed(0)
    module = QueryRelation(d_model=16, text_dim=12, num_layers=2, num_heads=4, dim_feedforward=32,
                           dedup_iou=0.5).eval()
    with torch.no_grad():
        module.out_proj.weight.normal_()
        module.representative_embed.normal_()
    queries, boxes, prompt, mask = inputs()
    boxes[:, 1] = boxes[:, 0] + 0.01  # query 1 copies query 0 ...
    scores = torch.zeros(2, 5)
    scores[:, 0] = 1.0  # ... which scores higher
    with torch.no_grad():
        base = module(queries, boxes, prompt, mask, scores=scores)
        changed = queries.clone()
        changed[:, 1] += torch.randn(16)  # not a constant: the layer norms would remove it
        moved = module(changed, boxes, prompt, mask, scores=scores)
        assert torch.equal(moved[:, [0, 2, 3, 4]], base[:, [0, 2, 3, 4]])
        assert not torch.allclose(moved[:, 1], base[:, 1])
        changed = queries.clone()
        changed[:, 2] += torch.randn(16)  # a representative: the others see it
        assert not torch.allclose(module(changed, boxes, prompt, mask, scores=scores)[:, 0], base[:, 0])
    with pytest.raises(ValueError, match="needs the queries' scores"):
        module(queries, boxes, prompt, mask)
    with pytest.raises(ValueError, match="dedup_iou"):
        QueryRelation(d_model=16, text_dim=12, dedup_iou=1.0)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="must be positive"):
        QueryRelation(d_model=16, text_dim=12, num_layers=0)
    with pytest.raises(ValueError, match="not divisible"):
        QueryRelation(d_model=18, text_dim=12, num_heads=4)


def test_only_the_tiny_preset_has_one_and_the_multiplier_scales_only_it():
    assert tiny().heads.query_relation_layers == 2 and r50().heads.query_relation_layers == 0
    assert tiny().heads.query_relation_dedup_iou == 0.0
    assert build_model(r50(video=False), allow_random_text_init=True).query_relation is None
    settings = OptimizerSettings(base_lr=1e-4, query_relation_multiplier=5.0)
    assert parameter_lr("query_relation.layers.0.self_attn.in_proj_weight", settings) == pytest.approx(5e-4)
    assert parameter_lr("query_colour.mlp.2.weight", settings) == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="query_relation_multiplier must be >= 0"):
        OptimizerSettings(query_relation_multiplier=-1.0)


def test_model_with_an_untrained_term_equals_the_model_without_one_and_a_trained_one_changes_only_retrieval(
        check_retrieval_only_part):
    cfg = tiny_with_query_relation()
    check_retrieval_only_part(cfg, cfg.replace(heads=dataclasses.replace(cfg.heads, query_relation_layers=0)),
                              "query_relation", "out_proj.weight", torch.tensor([[True] * 6 + [False] * 2]))


def test_training_matching_queries_do_not_see_the_denoising_queries():
    torch.manual_seed(0)
    model = build_model(tiny_with_query_relation()).train()
    with torch.no_grad():
        model.query_relation.out_proj.weight.normal_(0.0, 0.5)
    images = torch.randn(1, 3, 128, 160)
    pixel_mask = torch.ones(1, 128, 160, dtype=torch.bool)
    prompt = PromptFeatures(torch.randn(1, 8, 384), torch.ones(1, 8, dtype=torch.bool))

    def run(box: list[float]):  # the same draws each time (fusion attention dropout, denoising noise)
        torch.manual_seed(1)
        return model(images, pixel_mask, prompt, targets=[torch.tensor([box])],
                     generator=torch.Generator().manual_seed(1))

    a, b = run([0.5, 0.5, 0.2, 0.3]), run([0.5, 0.5, 0.2, 0.3])
    assert torch.equal(a.layers.pooled_logits, b.layers.pooled_logits)  # the draws repeat
    # another ground-truth box moves only the denoising queries; the matching queries' logits must not move
    c = run([0.2, 0.7, 0.3, 0.2])
    assert not torch.allclose(a.denoising.heads.pooled_logits, c.denoising.heads.pooled_logits)
    assert torch.equal(a.layers.pooled_logits, c.layers.pooled_logits)


def test_weights_files_with_and_without_it_load(tmp_path, check_optional_part_files):
    cfg = tiny_with_query_relation()
    check_optional_part_files(tmp_path, cfg, cfg.replace(heads=dataclasses.replace(cfg.heads, query_relation_layers=0)),
                              "query_relation", "out_proj.weight")


def test_onnx_export_matches_torch_on_other_inputs():
    import onnxruntime as ort

    module = trained_module()
    example = inputs(batch=1, seed=0)
    program = torch.onnx.export(module, example, None, dynamo=True, opset_version=18)
    session = ort.InferenceSession(program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    other = inputs(batch=1, seed=3)
    names = [i.name for i in session.get_inputs()]
    (got,) = session.run(None, dict(zip(names, [t.numpy() for t in other], strict=True)))
    with torch.no_grad():
        expected = module(*other)
    assert torch.allclose(torch.from_numpy(got), expected, atol=1e-5)
