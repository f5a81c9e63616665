"""The UNINEXT network (reference §0-§5): backbone -> input projection -> Bi-XAtt + deformable transformer -> heads.

One forward serves every task; tasks differ only in the prompt (category tokens, an expression, or a 4-channel
template) and in post-processing, which lives outside the network. `forward` returns the fixed-size `RawOutputs`
(inference) or, when ground truth is given, `TrainOutputs` with every decoder layer, the encoder proposals and the
denoising part.

Submodule names follow the official checkpoint (`detr.detr.*` / `detr.*` prefixes dropped) so conversion stays simple:
backbone, input_proj, transformer (level_embed, fusion = encoder.vl_layers.0.b_attn, encoder, enc_output(_norm),
tgt_embed, decoder, resizer), class_embed.{0..N-1} (VLAlign) + class_embed.N (StillClassifier), bbox_embed.{0..N},
iou_head.{0..N-1}, controller, mask_head, resizer (denoising label encoder), reid_head (reid_embed_head),
template_encoder (ref_backbone, shared input_proj, sot_fuser, adjust_layer), text_encoder (text_encoder.body);
text_adapter, colour_skip, query_colour, query_relation, query_resample and prompt_subject (`tiny` only, no official
counterpart: uninext_core.model.text_adapter, .colour_skip, .query_colour, .query_relation, .query_resample,
.prompt_subject).
Renames inside: encoder/decoder layer norms (see their docstrings), reid_embed_head.0.* -> reid_head.{layers,
ref_point_head}.*, reid_embed_head.1.* -> reid_head.embed.*; the official `transformer.decoder.{class,bbox}_embed.*`
entries are aliases of the top-level heads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from uninext_core.model.denoising import DenoisingQueries, build_denoising_queries
from uninext_core.model.mask_head import MaskHeadSmallConv
from uninext_core.model.mlp import MLP
from uninext_core.model.outputs import (
    DenoisingOutputs,
    EncoderOutputs,
    HeadOutputs,
    RawOutputs,
    RetrievalInputs,
    TrainOutputs,
)
from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.model.query_resample import MemoryView
from uninext_core.model.reid_head import ReidHead
from uninext_core.model.retrieval import pool_prompt
from uninext_core.model.transformer import DeformableTransformer, TransformerOutputs

MASK_LEVELS = 3  # s8, s16, s32 levels of the encoder memory feed the mask head


def level_padding_masks(pixel_mask: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
    """Padding masks per level, as the official backbone wrapper makes them.

    Levels 0..2 nearest-resize the image mask; level 3 nearest-resizes the level-0 mask.

    Args:
        pixel_mask: (B, H, W) bool, True on valid pixels.
        sizes: (H_l, W_l) of the four levels.

    Returns:
        Four (B, H_l, W_l) bool masks, True on padding.
    """
    padding = (~pixel_mask)[None].float()
    masks = [F.interpolate(padding, size=size).to(torch.bool)[0] for size in sizes[:3]]
    for size in sizes[3:]:
        masks.append(F.interpolate(masks[0][None].float(), size=size).to(torch.bool)[0])
    return masks


def _valid_pixels(pixel_mask: torch.Tensor) -> torch.Tensor:
    """(B, 2) valid (un-padded) width and height in pixels of top-left-rectangle pixel masks."""
    return torch.stack([pixel_mask[:, 0, :].sum(-1), pixel_mask[:, :, 0].sum(-1)], -1).to(torch.float32)


class Uninext(nn.Module):
    """UNINEXT with a BERT text encoder and (video models) the template encoder and re-ID head.

    Args:
        backbone: image backbone, (B, 3, H, W) -> [C3, C4, C5], with `.out_channels`.
        input_proj: [C3, C4, C5] -> four d_model maps at strides 8..64.
        colour_skip: ColourSkip adding each cell's mean input colour to the four maps (a `tiny` departure), or None
            (official).
        query_colour: QueryColour adding each query's box colour to its retrieval-head input (a `tiny` departure), or
            None (official).
        query_relation: QueryRelation adding a prompt-conditioned comparison of the queries to their retrieval-head
            input (a `tiny` departure), or None (official).
        query_resample: QueryResample sampling the encoder memory at each query's final box for the retrieval heads
            (a `tiny` departure), or None (official).
        prompt_subject: PromptSubject, a learnt attention pool of the prompt scored beside the average for
            expressions and templates (a `tiny` departure), or None (official).
        transformer: DeformableTransformer.
        class_embed: N decoder-layer VLAlign heads followed by the encoder StillClassifier.
        bbox_embed: N + 1 box MLPs (last: encoder proposals).
        iou_head: N Linear(C -> 1) IoU heads.
        controller: MLP(C -> C -> C -> P) giving the dynamic mask parameters.
        mask_head: MaskHeadSmallConv on the s8/s16/s32 encoder memory.
        resizer: denoising label encoder (FeatureResizer, C_l -> C).
        text_encoder: TextEncoder (tokens -> PromptFeatures).
        text_adapter: TextAdapter on the text encoder's tokens (a `tiny` departure), or None (official).
        template_encoder: TemplateEncoder (4-channel crops -> PromptFeatures), or None for image-only models.
        reid_head: ReidHead, or None (then embeddings are (B, Q, 0)).
        mask_dynamic_channels: D of the dynamic convs (8).
        mask_dynamic_layers: number of dynamic convs (3).
        mask_out_stride: stride of mask logits (4).
        dn_number: denoising budget DN_NUMBER (100).
        box_noise_scale: denoising box noise λ (1.0).
        size_divisibility: inputs are zero-padded (and masked) up to a multiple of this (32).
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        input_proj: nn.Module,
        colour_skip: nn.Module | None = None,
        query_colour: nn.Module | None = None,
        query_relation: nn.Module | None = None,
        query_resample: nn.Module | None = None,
        prompt_subject: nn.Module | None = None,
        transformer: DeformableTransformer,
        class_embed: nn.ModuleList,
        bbox_embed: nn.ModuleList,
        iou_head: nn.ModuleList,
        controller: MLP,
        mask_head: MaskHeadSmallConv,
        resizer: nn.Module,
        text_encoder: nn.Module,
        text_adapter: nn.Module | None = None,
        template_encoder: nn.Module | None,
        reid_head: ReidHead | None,
        mask_dynamic_channels: int = 8,
        mask_dynamic_layers: int = 3,
        mask_out_stride: int = 4,
        dn_number: int = 100,
        box_noise_scale: float = 1.0,
        size_divisibility: int = 32,
    ) -> None:
        super().__init__()
        num_layers = len(transformer.decoder.layers)
        if len(class_embed) != num_layers + 1 or len(bbox_embed) != num_layers + 1 or len(iou_head) != num_layers:
            raise ValueError(f"with {num_layers} decoder layers expected {num_layers + 1} class_embed, "
                             f"{num_layers + 1} bbox_embed and {num_layers} iou_head modules, got {len(class_embed)}, "
                             f"{len(bbox_embed)} and {len(iou_head)}")
        self.backbone = backbone
        self.input_proj = input_proj
        self.colour_skip = colour_skip
        self.query_colour = query_colour
        self.query_relation = query_relation
        self.query_resample = query_resample
        self.prompt_subject = prompt_subject
        self.transformer = transformer
        self.class_embed = class_embed
        self.bbox_embed = bbox_embed
        self.iou_head = iou_head
        self.controller = controller
        self.mask_head = mask_head
        self.resizer = resizer
        self.text_encoder = text_encoder
        self.text_adapter = text_adapter
        self.template_encoder = template_encoder
        self.reid_head = reid_head
        self.num_decoder_layers = num_layers
        self.mask_dynamic_channels = mask_dynamic_channels
        self.mask_dynamic_layers = mask_dynamic_layers
        self.mask_out_stride = mask_out_stride
        self.dn_number = dn_number
        self.box_noise_scale = box_noise_scale
        self.size_divisibility = size_divisibility

    # ----------------------------------------------------------------------------------------------------------
    # Prompt encoders (run once per prompt change; their outputs are reused every frame)
    # ----------------------------------------------------------------------------------------------------------

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> PromptFeatures:
        """BERT features of tokenised prompts (then the text adapter, if the preset has one): (B, T) ids and mask ->
        PromptFeatures (B, T, C_l)."""
        features = self.text_encoder(input_ids, attention_mask)
        return features if self.text_adapter is None else self.text_adapter(features)

    def encode_template(self, crops: torch.Tensor, padding: torch.Tensor | None = None) -> PromptFeatures:
        """Visual prompt tokens of template crops.

        Args:
            crops: (B, 4, S, S) normalised RGB + target prior channel.
            padding: optional (B, S, S) bool, True where the crop lies outside the frame (masked tokens).

        Returns:
            PromptFeatures (B, (S/8)², C_l).

        Raises:
            ValueError: the model was built without the template branch (video=False).
        """
        if self.template_encoder is None:
            raise ValueError("this model has no template encoder (built with template.enabled=False / video=False); "
                             "expected a video model for template prompts")
        return self.template_encoder(crops, padding)

    # ----------------------------------------------------------------------------------------------------------
    # Network
    # ----------------------------------------------------------------------------------------------------------

    def _pad_to_divisible(self, images: torch.Tensor, pixel_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        H, W = images.shape[-2:]
        d = self.size_divisibility
        pad_h, pad_w = (-H) % d, (-W) % d
        if pad_h == 0 and pad_w == 0:
            return images, pixel_mask
        return F.pad(images, (0, pad_w, 0, pad_h)), F.pad(pixel_mask, (0, pad_w, 0, pad_h), value=False)

    def _check_inputs(self, images: torch.Tensor, pixel_mask: torch.Tensor, prompt: PromptFeatures) -> PromptFeatures:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        B = images.shape[0]
        if pixel_mask.shape != (B, *images.shape[-2:]) or pixel_mask.dtype != torch.bool:
            raise ValueError(f"pixel_mask must be bool (B, H, W) = {(B, *images.shape[-2:])}, "
                             f"got {pixel_mask.dtype} {tuple(pixel_mask.shape)}")
        hidden, mask = prompt
        if hidden.dim() != 3 or mask.shape != hidden.shape[:2]:
            raise ValueError(f"prompt must be hidden (B, T, C_l) with mask (B, T), got {tuple(hidden.shape)} and "
                             f"{tuple(mask.shape)}")
        if hidden.shape[0] == 1 and B > 1:
            hidden, mask = hidden.expand(B, -1, -1), mask.expand(B, -1)
        elif hidden.shape[0] != B:
            raise ValueError(f"prompt batch {hidden.shape[0]} does not match image batch {B} (or 1)")
        return PromptFeatures(hidden, mask.bool())

    def _colour_samples(self, images: torch.Tensor, valid_px: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """(B, Q, 3·G²) query-colour samples of the boxes, or (B, Q, 0) when the model has no query colour."""
        if self.query_colour is None:
            return boxes.new_zeros(*boxes.shape[:2], 0)
        return self.query_colour.sample(images, valid_px, boxes.detach())

    def resample_term(self, hidden: torch.Tensor, boxes: torch.Tensor, view: MemoryView) -> torch.Tensor:
        """(B, Q, C) query-resample term of the queries (`query_resample.py`), or (B, Q, 0) without one."""
        if self.query_resample is None:
            return hidden.new_zeros(*hidden.shape[:2], 0)
        return self.query_resample(hidden, boxes, view)

    def retrieval_logits(self, layer: int, hidden: torch.Tensor, boxes: torch.Tensor, colour_samples: torch.Tensor,
                         prompt: torch.Tensor, pooled: torch.Tensor, prompt_mask: torch.Tensor,
                         attn_mask: torch.Tensor | None = None, resampled: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token (B, Q, T) and pooled (B, Q, 1) logits of one decoder layer's retrieval head. The query colour,
        query resample and query relation terms, when the model has them, are added to what the retrieval head sees,
        and only there; the prompt subject, when the model has one, moves the pooled logit towards its own (gated).
        `colour_samples` come from `_colour_samples`, `resampled` from `resample_term` (needed when the model has a
        query resample), `attn_mask` is the decoder's denoising mask (training)."""
        head = self.class_embed[layer]
        retrieval = hidden
        if self.query_colour is not None:
            retrieval = retrieval + self.query_colour.embed(colour_samples).to(hidden.dtype)
        if self.query_resample is not None:
            if resampled is None or resampled.shape != hidden.shape:
                raise ValueError("a model with a query resample needs its term (resample_term) of the queries' shape "
                                 f"{tuple(hidden.shape)}, got {None if resampled is None else tuple(resampled.shape)}")
            retrieval = retrieval + resampled.to(hidden.dtype)
        if self.query_relation is not None:
            B = hidden.shape[0]
            # the prompt score without the relation term picks each object's representative query (dedup_iou > 0)
            scores = head(retrieval, pooled[:, None, :])[..., 0] if self.query_relation.dedup_iou > 0 else None
            relation = self.query_relation(retrieval, boxes, prompt.expand(B, -1, -1), prompt_mask.expand(B, -1),
                                           attn_mask, scores)
            retrieval = retrieval + relation.to(hidden.dtype)
        pooled_logits = head(retrieval, pooled[:, None, :])
        if self.prompt_subject is not None:
            subject = self.prompt_subject(prompt, prompt_mask)  # (B or 1, C_l)
            gate = self.prompt_subject.gate.to(pooled_logits.dtype)
            subject_logits = head(retrieval, subject[:, None, :].expand(hidden.shape[0], -1, -1))
            pooled_logits = pooled_logits + gate * (subject_logits - pooled_logits)
        return head(retrieval, prompt), pooled_logits

    def _heads(self, layer: int, hidden: torch.Tensor, boxes: torch.Tensor, prompt: torch.Tensor,
               pooled: torch.Tensor, prompt_mask: torch.Tensor, images: torch.Tensor, valid_px: torch.Tensor,
               view: MemoryView, attn_mask: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token, pooled and IoU logits of one decoder layer (`boxes`: that layer's)."""
        colour = self._colour_samples(images, valid_px, boxes)
        token, pooled_logits = self.retrieval_logits(layer, hidden, boxes, colour, prompt, pooled, prompt_mask,
                                                     attn_mask, self.resample_term(hidden, boxes, view))
        return token, pooled_logits, self.iou_head[layer](hidden)

    def _mask_features(self, out: TransformerOutputs) -> torch.Tensor:
        B, _, C = out.memory.shape
        maps, start = [], 0
        for h, w in out.spatial_shapes[:MASK_LEVELS]:
            maps.append(out.memory[:, start:start + h * w].transpose(1, 2).reshape(B, C, h, w))
            start += h * w
        return self.mask_head(maps)

    @staticmethod
    def _memory_view(out: TransformerOutputs) -> MemoryView:
        return MemoryView(out.memory, out.spatial_shapes, out.valid_ratios, out.padding_mask)

    def _embeddings(self, out: TransformerOutputs, hidden: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        if self.reid_head is None:
            return hidden.new_zeros(*hidden.shape[:2], 0)
        return self.reid_head(hidden, boxes, out.memory, out.spatial_shapes, out.valid_ratios, out.padding_mask)

    def _transform(self, images: torch.Tensor, pixel_mask: torch.Tensor, prompt: PromptFeatures,
                   denoising: DenoisingQueries | None) -> TransformerOutputs:
        """Backbone, input projections (and colour skip), then the deformable transformer, on padded inputs."""
        srcs = self.input_proj(self.backbone(images))
        if self.colour_skip is not None:
            srcs = self.colour_skip(images, srcs)
        padding_masks = level_padding_masks(pixel_mask, [tuple(s.shape[-2:]) for s in srcs])
        return self.transformer(srcs, padding_masks, prompt, score_head=self.class_embed[-1],
                                box_heads=self.bbox_embed, denoising=denoising)

    @torch.no_grad()
    def retrieval_inputs(self, images: torch.Tensor, pixel_mask: torch.Tensor, prompt: PromptFeatures
                         ) -> RetrievalInputs:
        """The inputs of the last decoder layer's retrieval head (inference path, no denoising), so that head, the
        query colour and the query relation can be fitted on a frozen network without running it again.
        Arguments as `forward`."""
        prompt = self._check_inputs(images, pixel_mask, prompt)
        images, pixel_mask = self._pad_to_divisible(images, pixel_mask)
        out = self._transform(images, pixel_mask, prompt, None)
        hidden = out.decoder.hidden[-1]
        boxes = out.decoder.boxes_cxcywh[-1]
        return RetrievalInputs(hidden=hidden, boxes_cxcywh=boxes,
                               colour_samples=self._colour_samples(images, _valid_pixels(pixel_mask), boxes),
                               prompt=out.prompt, pooled_prompt=out.pooled_prompt, prompt_mask=prompt.mask,
                               iou_logits=self.iou_head[self.num_decoder_layers - 1](hidden),
                               memory=self._memory_view(out) if self.query_resample is not None else None)

    def forward(
        self,
        images: torch.Tensor,
        pixel_mask: torch.Tensor,
        prompt: PromptFeatures,
        *,
        targets: Sequence[torch.Tensor] | None = None,
        use_denoising: bool = True,
        generator: torch.Generator | None = None,
    ) -> RawOutputs | TrainOutputs:
        """Detect and retrieve the prompted instances.

        Args:
            images: (B, 3, H, W) float, normalised; padded bottom/right (padded up to a multiple of 32 here if not).
            pixel_mask: (B, H, W) bool, True on valid (un-padded) pixels, a top-left rectangle per image.
            prompt: PromptFeatures (hidden (B or 1, T, C_l), mask (B or 1, T) True valid) from `encode_text` or
                `encode_template` (or their concatenation).
            targets: training only: per image the ground-truth boxes_cxcywh (N_b, 4) normalised to the un-padded
                image; when given, TrainOutputs are returned and denoising queries are built from them.
            use_denoising: with targets, prepend denoising queries (False e.g. for a reference frame).
            generator: random source for the denoising noise.

        Returns:
            RawOutputs (targets None) or TrainOutputs.
        """
        prompt = self._check_inputs(images, pixel_mask, prompt)
        images, pixel_mask = self._pad_to_divisible(images, pixel_mask)
        denoising = None
        if targets is not None:
            if len(targets) != images.shape[0]:
                raise ValueError(f"got targets for {len(targets)} images, expected {images.shape[0]}")
            label_content = self.resizer(pool_prompt(prompt.hidden, prompt.mask))
            dn_number = self.dn_number if use_denoising else 0
            denoising = build_denoising_queries(targets, label_content, dn_number=dn_number,
                                                box_noise_scale=self.box_noise_scale,
                                                num_queries=self.transformer.num_queries, generator=generator)
        out = self._transform(images, pixel_mask, prompt, denoising)
        decoded = out.decoder
        valid_px = _valid_pixels(pixel_mask)
        mask_features = self._mask_features(out)

        if denoising is None:
            hidden = decoded.hidden[-1]
            boxes = decoded.boxes_cxcywh[-1]
            token_logits, pooled_logits, iou_logits = self._heads(self.num_decoder_layers - 1, hidden, boxes,
                                                                  out.prompt, out.pooled_prompt, prompt.mask, images,
                                                                  valid_px, self._memory_view(out))
            return RawOutputs(
                token_logits=token_logits,
                pooled_logits=pooled_logits,
                iou_logits=iou_logits,
                boxes_cxcywh=boxes,
                embeddings=self._embeddings(out, hidden, boxes),
                mask_params=self.controller(hidden),
                mask_features=mask_features,
                mask_reference_px=decoded.reference_boxes[-1][..., :2] * valid_px[:, None, :],
            )
        return self._train_outputs(out, denoising, mask_features, images, valid_px, prompt.mask)

    def _train_outputs(self, out: TransformerOutputs, denoising: DenoisingQueries, mask_features: torch.Tensor,
                       images: torch.Tensor, valid_px: torch.Tensor, prompt_mask: torch.Tensor) -> TrainOutputs:
        decoded = out.decoder
        n_dn = denoising.meta.num_queries
        per_layer = [self._heads(layer, decoded.hidden[layer], decoded.boxes_cxcywh[layer], out.prompt,
                                 out.pooled_prompt, prompt_mask, images, valid_px, self._memory_view(out),
                                 denoising.attn_mask)
                     for layer in range(self.num_decoder_layers)]
        token_logits = torch.stack([p[0] for p in per_layer])
        pooled_logits = torch.stack([p[1] for p in per_layer])
        iou_logits = torch.stack([p[2] for p in per_layer])
        boxes = decoded.boxes_cxcywh

        def split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x[:, :, :n_dn], x[:, :, n_dn:]

        dn_token, token_logits = split(token_logits)
        dn_pooled, pooled_logits = split(pooled_logits)
        dn_iou, iou_logits = split(iou_logits)
        dn_boxes, boxes = split(boxes)
        hidden = decoded.hidden[:, :, n_dn:]
        return TrainOutputs(
            layers=HeadOutputs(token_logits, pooled_logits, iou_logits, boxes),
            mask_params=self.controller(hidden),
            mask_reference_px=decoded.reference_boxes[:, :, n_dn:, :2] * valid_px[None, :, None, :],
            mask_features=mask_features,
            encoder=EncoderOutputs(logits=out.encoder_logits, boxes_cxcywh=out.encoder_boxes_cxcywh),
            denoising=DenoisingOutputs(heads=HeadOutputs(dn_token, dn_pooled, dn_iou, dn_boxes), meta=denoising.meta),
            embeddings=self._embeddings(out, hidden[-1], boxes[-1]),
            prompt_mask=prompt_mask,
        )
