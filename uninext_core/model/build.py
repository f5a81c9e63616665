"""`build_model`: the one reader of `UninextConfig`; every module below it takes explicit keyword arguments."""

from __future__ import annotations

import copy
import logging

from torch import nn

from uninext_core.config import UninextConfig, load_config
from uninext_core.model.backbone import build_backbone
from uninext_core.model.colour_skip import ColourSkip
from uninext_core.model.decoder import DeformableDecoder, DeformableDecoderLayer
from uninext_core.model.denoising import FeatureResizer
from uninext_core.model.encoder import DeformableEncoder, DeformableEncoderLayer
from uninext_core.model.fusion import FP16_SAFE_MASK_VALUE, MASK_VALUE, BiXAttentionBlock
from uninext_core.model.input_proj import InputProjection
from uninext_core.model.mask_head import MaskHeadSmallConv, dynamic_param_count
from uninext_core.model.mlp import MLP
from uninext_core.model.prompt_subject import PromptSubject
from uninext_core.model.query_colour import QueryColour
from uninext_core.model.query_relation import QueryRelation
from uninext_core.model.query_resample import QueryResample
from uninext_core.model.reid_head import ReidHead
from uninext_core.model.retrieval import StillClassifier, VLAlign, prior_bias
from uninext_core.model.template_encoder import TemplateEncoder
from uninext_core.model.text_adapter import TextAdapter
from uninext_core.model.text_encoder import build_text_encoder
from uninext_core.model.transformer import DeformableTransformer
from uninext_core.model.uninext import Uninext

logger = logging.getLogger(__name__)


def _clones(module: nn.Module, count: int) -> list[nn.Module]:
    # Official heads are deep copies of one initialised module (identical start values).
    return [copy.deepcopy(module) for _ in range(count)]


def build_transformer(cfg: UninextConfig) -> DeformableTransformer:
    """Fusion block, encoder, decoder and their container from `cfg.fusion` and `cfg.transformer`."""
    t, f = cfg.transformer, cfg.fusion
    fusion = BiXAttentionBlock(v_dim=t.d_model, l_dim=cfg.text.hidden_dim, embed_dim=f.inner_dim,
                               num_heads=f.num_heads, dropout=f.attn_dropout, init_gamma=f.init_gamma,
                               mask_value=FP16_SAFE_MASK_VALUE if f.fp16_safe_mask else MASK_VALUE)
    encoder_layer = DeformableEncoderLayer(d_model=t.d_model, dim_feedforward=t.dim_feedforward, dropout=t.dropout,
                                           n_levels=t.num_levels, n_heads=t.num_heads, n_points=t.encoder_points)
    decoder_layer = DeformableDecoderLayer(d_model=t.d_model, dim_feedforward=t.dim_feedforward, dropout=t.dropout,
                                           n_levels=t.num_levels, n_heads=t.num_heads, n_points=t.decoder_points)
    return DeformableTransformer(
        fusion=fusion,
        encoder=DeformableEncoder.with_clones(encoder_layer, t.num_encoder_layers),
        decoder=DeformableDecoder.with_clones(decoder_layer, t.num_decoder_layers, d_model=t.d_model,
                                              look_forward_twice=t.look_forward_twice),
        d_model=t.d_model, text_dim=cfg.text.hidden_dim, num_levels=t.num_levels, num_queries=t.num_queries,
    )


def build_model(preset_or_config: str | UninextConfig, *, allow_random_text_init: bool = False) -> Uninext:
    """The UNINEXT network described by a preset name, a YAML path or a config, with random weights.

    Args:
        preset_or_config: "tiny", "r50", "convnext_l", "vit_h", a YAML file path, or a UninextConfig.
        allow_random_text_init: build a randomly initialised bert-base-shaped text encoder when the config names no
            local BERT folder (tests; checkpoint conversion supplies the weights).

    Returns:
        Uninext in train mode (call .eval() for inference).

    Raises:
        ValueError: inconsistent configuration (e.g. only 4 levels are supported) or a missing text encoder.
    """
    cfg = preset_or_config if isinstance(preset_or_config, UninextConfig) else load_config(preset_or_config)
    if not isinstance(cfg, UninextConfig):
        raise TypeError(f"expected a preset name, YAML path or UninextConfig, got {type(preset_or_config).__name__}")
    t, h = cfg.transformer, cfg.heads
    if t.num_levels != 4:
        raise ValueError(f"transformer.num_levels must be 4 (strides 8..64 from C3..C5), got {t.num_levels}")
    d_model, text_dim = t.d_model, cfg.text.hidden_dim

    backbone = build_backbone(cfg.backbone)
    input_proj = InputProjection(in_channels=backbone.out_channels, d_model=d_model)
    colour_skip = ColourSkip(d_model=d_model, num_levels=t.num_levels) if cfg.backbone.colour_skip else None
    transformer = build_transformer(cfg)
    query_colour = QueryColour(d_model=d_model, grid=h.query_colour_grid) if h.query_colour_grid else None
    query_relation = None
    if h.query_relation_layers:
        query_relation = QueryRelation(d_model=d_model, text_dim=text_dim, num_layers=h.query_relation_layers,
                                       num_heads=t.num_heads, dim_feedforward=2 * d_model,
                                       dedup_iou=h.query_relation_dedup_iou)
    query_resample = None
    if h.query_resample_layers:
        query_resample = QueryResample(d_model=d_model, num_layers=h.query_resample_layers, num_heads=t.num_heads,
                                       num_levels=t.num_levels, num_points=h.query_resample_points,
                                       dim_feedforward=2 * d_model)

    prompt_subject = PromptSubject(text_dim=text_dim) if h.prompt_subject else None

    vl_align = VLAlign(d_model=d_model, text_dim=text_dim, prior_prob=h.prior_prob)
    class_embed = nn.ModuleList([*_clones(vl_align, t.num_decoder_layers),
                                 StillClassifier(d_model=d_model, prior_prob=h.prior_prob)])
    box_head = MLP(input_dim=d_model, hidden_dim=d_model, output_dim=4, num_layers=3)
    nn.init.zeros_(box_head.layers[-1].weight)
    nn.init.zeros_(box_head.layers[-1].bias)
    bbox_embed = nn.ModuleList(_clones(box_head, t.num_decoder_layers + 1))
    iou = nn.Linear(d_model, 1)
    nn.init.constant_(iou.bias, prior_bias(h.prior_prob))
    iou_head = nn.ModuleList(_clones(iou, t.num_decoder_layers))

    num_params = dynamic_param_count(in_channels=h.mask_feature_dim, channels=h.mask_dynamic_channels,
                                     num_layers=h.mask_dynamic_layers)
    controller = MLP(input_dim=d_model, hidden_dim=d_model, output_dim=num_params, num_layers=3)
    for layer in controller.layers:
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)
    mask_head = MaskHeadSmallConv(d_model=d_model, mid_dim=h.mask_mid_dim, out_dim=h.mask_feature_dim)
    resizer = FeatureResizer(input_dim=text_dim, output_dim=d_model, dropout=t.dropout)

    text_encoder = build_text_encoder(cfg.text, allow_random_init=allow_random_text_init)
    text_adapter = None
    if cfg.text.adapter_layers:
        text_adapter = TextAdapter(width=text_dim, num_layers=cfg.text.adapter_layers, num_heads=cfg.text.adapter_heads,
                                   ffn_dim=cfg.text.adapter_ffn_dim)
    template_encoder = None
    if cfg.template.enabled:
        template_encoder = TemplateEncoder(backbone=build_backbone(cfg.backbone, in_channels=4), input_proj=input_proj,
                                           d_model=d_model, text_dim=text_dim)
    reid_head = None
    if h.reid:
        reid_layer = DeformableDecoderLayer(d_model=d_model, dim_feedforward=t.dim_feedforward, dropout=t.dropout,
                                            n_levels=t.num_levels, n_heads=t.num_heads, n_points=t.decoder_points)
        reid_head = ReidHead(layer=reid_layer, num_layers=h.reid_layers, d_model=d_model, embed_dim=h.reid_dim)

    model = Uninext(
        backbone=backbone, input_proj=input_proj, colour_skip=colour_skip, query_colour=query_colour,
        query_relation=query_relation, query_resample=query_resample, prompt_subject=prompt_subject,
        transformer=transformer,
        class_embed=class_embed,
        bbox_embed=bbox_embed, iou_head=iou_head, controller=controller, mask_head=mask_head, resizer=resizer,
        text_encoder=text_encoder, text_adapter=text_adapter, template_encoder=template_encoder, reid_head=reid_head,
        mask_dynamic_channels=h.mask_dynamic_channels, mask_dynamic_layers=h.mask_dynamic_layers,
        mask_out_stride=h.mask_out_stride, dn_number=t.dn_number, box_noise_scale=t.box_noise_scale,
        size_divisibility=cfg.input.size_divisibility,
    )
    logger.info("built UNINEXT %s (video=%s): %.2f M parameters", cfg.name, cfg.video,
                sum(p.numel() for p in model.parameters()) / 1e6)
    return model
