"""Fitting the retrieval side on cached inputs: the cache reproduces the forward's logits and the criterion's
final-layer loss_ce, round-trips through its file, the fit trains only the retrieval side and learns a rule from cached
frames."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from uninext_core.config import tiny
from uninext_core.model.build import build_model
from uninext_core.train.batching import FrameBatch, FrameTargets, PromptBatch, TrainBatch
from uninext_core.train.criterion import SetCriterion
from uninext_core.train.loop import encode_prompt, freeze_all_but
from uninext_core.train.matcher import DynamicKMatcher
from uninext_core.train.optim import OptimizerSettings
from uninext_core.train.retrieval_fit import (
    CachedFrame,
    batch_logits,
    check_fittable,
    collate_frames,
    expression_top1,
    fit_loss,
    fit_retrieval,
    frames_of_batch,
    load_frames,
    save_frames,
)

RETRIEVAL = ("query_relation.", "query_colour.", "class_embed.1.")


pytestmark = pytest.mark.usefixtures("one_thread")


def retrieval_model(unblock_zero_inits, *, resample: bool = False):
    """An untrained tiny image model with the query colour and a 1-layer query relation (and, with `resample`, a
    1-layer query resample), their zero inits opened."""
    cfg = tiny(video=False)
    cfg = cfg.replace(heads=dataclasses.replace(cfg.heads, query_colour_grid=4, query_relation_layers=1,
                                                query_resample_layers=int(resample)))
    torch.manual_seed(0)
    return unblock_zero_inits(build_model(cfg)).eval()


def expression_batch(model, *, sizes=((96, 128), (128, 96))) -> TrainBatch:
    """Two images of different sizes (so the pixel masks pad) with expressions of different lengths."""
    H = max(h for h, _ in sizes)
    W = max(w for _, w in sizes)
    images = torch.zeros(len(sizes), 3, H, W)
    mask = torch.zeros(len(sizes), H, W, dtype=torch.bool)
    targets = []
    g = torch.Generator().manual_seed(3)
    for b, (h, w) in enumerate(sizes):
        images[b, :, :h, :w] = torch.randn(3, h, w, generator=g)
        mask[b, :h, :w] = True
        box = torch.tensor([[0.4, 0.5, 0.3, 0.4]])
        targets.append(FrameTargets(boxes_cxcywh=box, boxes_xyxy_px=box * torch.tensor([w, h, w, h]),
                                    positive_map=torch.ones(1, 1, dtype=torch.bool), masks=None,
                                    ids=torch.tensor([1]), image_size_hw=(h, w), original_height=h))
    tokens = model.text_encoder.tokenizer(["the red circle left of the blue star", "the second square"],
                                          padding=True, return_tensors="pt")
    prompt = PromptBatch(kind="expression", input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
    return TrainBatch(frames=[FrameBatch(images, mask, images * 0, targets)], prompt=prompt,
                      mask_supervision="none", reid=False, dataset="test")


@pytest.mark.parametrize("resample", [False, True], ids=["relation", "relation+resample"])
def test_cached_inputs_give_the_forward_logits_and_the_criterion_final_layer_loss(unblock_zero_inits, resample):
    model = retrieval_model(unblock_zero_inits, resample=resample)
    batch = expression_batch(model)
    key = batch.frames[0]
    with torch.no_grad():
        features = encode_prompt(model, batch.prompt)
        raw = model(key.images, key.pixel_mask, features)
        frames = frames_of_batch(model, batch, features)
        train = model(key.images, key.pixel_mask, features, targets=[t.boxes_cxcywh for t in key.targets],
                      use_denoising=False)
        expected_loss = SetCriterion(num_decoder_layers=2)(train, key.targets, prompt_kind="expression",
                                                           mask_supervision="none").losses["loss_ce"]
    assert [f.prompt.shape[0] for f in frames] == [int(m.sum()) for m in batch.prompt.attention_mask]
    assert all((f.memory is not None) == resample for f in frames)
    cached = collate_frames(frames)
    with torch.no_grad():
        token, pooled = batch_logits(model, cached._replace(kind="category")), batch_logits(model, cached)
        loss = fit_loss(model, cached, DynamicKMatcher())
    # float16 storage of the query features, colour samples and prompt tokens
    torch.testing.assert_close(pooled, raw.pooled_logits, atol=2e-2, rtol=1e-2)
    short = frames[1].prompt.shape[0]
    torch.testing.assert_close(token[1, :, :short], raw.token_logits[1, :, :short], atol=2e-2, rtol=1e-2)
    torch.testing.assert_close(cached.iou_logits, raw.iou_logits[..., 0])
    torch.testing.assert_close(loss, expected_loss, atol=2e-3, rtol=2e-3)


def test_cache_file_round_trip_and_other_files_are_refused(tmp_path, unblock_zero_inits):
    model = retrieval_model(unblock_zero_inits, resample=True)
    batch = expression_batch(model)
    with torch.no_grad():
        frames = frames_of_batch(model, batch, encode_prompt(model, batch.prompt))
    loaded = load_frames(save_frames(frames, tmp_path / "cache" / "chunk_00000.pt"))
    assert len(loaded) == len(frames)
    for a, b in zip(frames, loaded, strict=True):
        for name, x, y in zip(a._fields, a, b, strict=True):
            assert x == y if isinstance(x, str) else torch.equal(x, y), name
    assert loaded[0].memory_view().spatial_shapes == [tuple(s.shape[-2:]) for s in
                                                      model.input_proj(model.backbone(batch.frames[0].images))]
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a retrieval cache"):
        load_frames(tmp_path / "other.pt")


def test_only_the_last_layer_retrieval_side_may_be_fitted(unblock_zero_inits):
    model = retrieval_model(unblock_zero_inits)
    freeze_all_but(model, ("query_relation.", "class_embed.0."))
    with pytest.raises(ValueError, match=r"class_embed\.0"):
        check_fittable(model)
    freeze_all_but(model, ("query_relation.",))
    check_fittable(model)
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="nothing to fit"):
        check_fittable(model)


def red_query_frames(count: int, *, seed: int, queries: int, width: int, samples: int) -> list[CachedFrame]:
    """Frames whose referent is the one query with red colour samples: a rule only the query colour can read (the
    query features are faint noise, and boxes and prompt carry nothing about it)."""
    g = torch.Generator().manual_seed(seed)
    frames = []
    prompt = torch.randn(5, 384, generator=g)
    for _ in range(count):
        centres = torch.rand(queries, 2, generator=g) * 0.8 + 0.1
        boxes = torch.cat([centres, torch.full((queries, 2), 0.08)], -1)
        colour = torch.randn(queries, samples, generator=g)
        referent = int(torch.randint(queries, (), generator=g))
        colour[referent, 0::3] += 2.0
        frames.append(CachedFrame(
            kind="expression", dataset="synthetic", hidden=(0.1 * torch.randn(queries, width, generator=g)).half(),
            boxes_cxcywh=boxes, colour_samples=colour.half(), prompt=prompt.half(),
            prompt_mask=torch.ones(5, dtype=torch.bool), pooled_prompt=prompt.mean(0), iou_logits=torch.zeros(queries),
            target_boxes_cxcywh=boxes[referent:referent + 1].clone(), positive_map=torch.ones(1, 1, dtype=torch.bool)))
    return frames


def test_the_fit_learns_a_rule_from_cached_frames_and_changes_only_the_retrieval_side(unblock_zero_inits):
    model = retrieval_model(unblock_zero_inits)
    freeze_all_but(model, RETRIEVAL)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    shape = dict(queries=model.transformer.num_queries, width=model.transformer.d_model, samples=48)
    train, held_out = red_query_frames(192, seed=1, **shape), red_query_frames(64, seed=2, **shape)
    start = expression_top1(model, held_out)
    reports = fit_retrieval(model, train, settings=OptimizerSettings(base_lr=1e-3, weight_decay=0.0), epochs=4,
                            batch_size=16, lr_drop_epochs=[3], clip_grad_norm=0.0, val_frames=held_out)
    assert start < 0.1
    assert reports[-1].val_top1 >= 0.9
    assert reports[-1].loss < reports[0].loss
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith(RETRIEVAL) for k in changed)
    assert any(k.startswith("query_colour.") for k in changed)


def test_bad_fit_arguments_are_refused(unblock_zero_inits):
    model = retrieval_model(unblock_zero_inits)
    freeze_all_but(model, RETRIEVAL)
    settings = OptimizerSettings(base_lr=1e-3)
    with pytest.raises(ValueError, match="no cached frames"):
        fit_retrieval(model, [], settings=settings, epochs=1, batch_size=4)
    with pytest.raises(ValueError, match="positive"):
        fit_retrieval(model, [], settings=settings, epochs=0, batch_size=4)
    frames = red_query_frames(2, seed=0, queries=model.transformer.num_queries, width=model.transformer.d_model,
                                  samples=48)
    with pytest.raises(ValueError, match="one prompt kind"):
        collate_frames([frames[0], frames[1]._replace(kind="template")])


def test_a_resample_model_refuses_a_cache_without_memory(unblock_zero_inits):
    model = retrieval_model(unblock_zero_inits, resample=True)
    freeze_all_but(model, ("query_resample.",))
    check_fittable(model)
    frames = red_query_frames(2, seed=0, queries=model.transformer.num_queries, width=model.transformer.d_model,
                              samples=48)
    with pytest.raises(ValueError, match="no encoder memory"):
        fit_loss(model, collate_frames(frames), DynamicKMatcher())
    with pytest.raises(ValueError, match="no encoder memory"):
        frames[0].memory_view()
