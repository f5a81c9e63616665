"""Official UNINEXT state-dict keys -> ours: explicit rules per module group (reference §9, §12 item 9).

The official checkpoints (detectron2 `.pth`, `model` dict; every key listed in
tests/data/official_state_dicts/*.tsv) use the module tree of `UNINEXT_IMG` / `UNINEXT_VID`. Ours differs as follows;
every difference is one rule below, and every official key is either mapped, an alias, or skipped with a reason.

official -> ours:
- `text_encoder.body.model.*` (HF BertModel) -> `text_encoder.model.*`; its `embeddings.position_ids` buffer is
  skipped (transformers 5 keeps it as a non-persistent arange).
- `detr.detr.backbone.0.backbone.*` -> `backbone.body.*`; `detr.detr.ref_backbone.0.backbone.*` ->
  `template_encoder.backbone.body.*`. Inside:
  - ResNet (detectron2 -> torchvision): `stem.conv1` -> `conv1`, `stem.conv1.norm` -> `bn1`,
    `res{r}.{i}.conv{k}` -> `layer{r-1}.{i}.conv{k}`, `res{r}.{i}.conv{k}.norm` -> `layer{r-1}.{i}.bn{k}`,
    `res{r}.{i}.shortcut` -> `layer{r-1}.{i}.downsample.0`, `res{r}.{i}.shortcut.norm` -> `...downsample.1`.
  - ConvNeXt: `*.weight.weight`, `*.bias.weight`, `gamma.weight` of shape (1, C) (nn.Embedding) -> `*.weight`,
    `*.bias`, `gamma` of shape (C,).
  - ViT: `patch_embed`, `pos_embed`, `blocks.*`, `fpn1.0` keep their names.
- `detr.detr.input_proj.{l}.{j}` -> `input_proj.levels.{l}.{j}`.
- `detr.detr.transformer.encoder.vl_layers.0.b_attn.*` -> `transformer.fusion.*`.
- encoder layers: `norm1`, `norm2` -> `norm_self_attn`, `norm_ffn`; decoder and re-ID layers: `norm1`, `norm2`,
  `norm3` -> `norm_cross_attn`, `norm_self_attn`, `norm_ffn`.
- `detr.detr.transformer.decoder.{class,bbox}_embed.*` are aliases of `detr.detr.{class,bbox}_embed.*` (the same
  tensors saved twice): checked equal, not mapped.
- `detr.detr.{transformer,class_embed,bbox_embed,iou_head}.*` and `detr.{controller,mask_head,resizer}.*` keep their
  names without the `detr.detr.` / `detr.` prefix.
- `detr.reid_embed_head.0.layers.*`, `.0.ref_point_head.*`, `.1.*` -> `reid_head.layers.*`, `.ref_point_head.*`,
  `.embed.*`.
- `detr.sot_fuser.*`, `detr.adjust_layer.*` -> `template_encoder.sot_fuser.*`, `template_encoder.adjust_layer.*`.
- `criterion._iter` is skipped: the BoxInst warm-up counter of the loss, not part of the network.

FrozenBatchNorm statistics (`running_mean`, `running_var`) are mapped like the affine parameters. The ResNet,
ConvNeXt and ViT rules only apply to the backbone kind the target model has, so a checkpoint with another backbone
yields unexpected keys instead of wrong tensors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, NamedTuple

from uninext_core.config import BackboneKind

Transform = Literal["copy", "squeeze_embedding"]
KeyKind = Literal["tensor", "alias", "skip", "video_only", "unknown"]

TEXT_ENCODER_PREFIX = "text_encoder.body.model."
POSITION_IDS_KEY = "text_encoder.body.model.embeddings.position_ids"
MAIN_BACKBONE_PREFIX = "detr.detr.backbone.0.backbone."
TEMPLATE_BACKBONE_PREFIX = "detr.detr.ref_backbone.0.backbone."
SKIP_REASONS: dict[str, str] = {
    POSITION_IDS_KEY: "BERT position_ids buffer: transformers 5 does not save it and recomputes "
                      "arange(max_position_embeddings)",
    "criterion._iter": "loss state (BoxInst warm-up iteration counter), not part of the network",
}
VIDEO_ONLY_REASON = ("video-stage module (template branch / re-ID head); the image model has none, as when the "
                     "official infer.sh loads a stage-3 checkpoint into UNINEXT_IMG")

_W = r"(?P<p>weight|bias)"
_N = r"(?P<n>\d+)"
_NORM_STATS = r"(?P<p>weight|bias|running_mean|running_var)"


@dataclass(frozen=True)
class KeyRule:
    """One official key pattern and its counterpart.

    Attributes:
        group: module group, for reports ("backbone", "fusion", ...).
        pattern: compiled regex matched against the whole official key.
        ours: our key, as a `re.Match.expand` template or a function of the match.
        transform: "copy", or "squeeze_embedding" for ConvNeXt's (1, C) Embedding weights -> (C,).
        video_only: the module exists only in video models (template backbone, re-ID head, fuser, adjust layer).
    """

    group: str
    pattern: re.Pattern[str]
    ours: str | Callable[[re.Match[str]], str]
    transform: Transform = "copy"
    video_only: bool = False

    def target(self, match: re.Match[str]) -> str:
        """Our key for a match of `pattern`."""
        return self.ours(match) if callable(self.ours) else match.expand(self.ours)


class KeyMapping(NamedTuple):
    """What to do with one official key.

    Attributes:
        kind: "tensor" (copy to `ours`), "alias" (second copy of `canonical`), "skip" (dropped, see `reason`),
            "video_only" (a video-stage module, `ours` is its video-model name), or "unknown" (no rule).
        ours: our key for "tensor" and "video_only", else None.
        canonical: for "alias", the official key holding the same tensor; else None.
        transform: "copy" or "squeeze_embedding".
        group: module group of the rule, "" for unknown keys.
        reason: why a key is skipped (kind "skip" / "video_only"), else "".
    """

    kind: KeyKind
    ours: str | None
    canonical: str | None = None
    transform: Transform = "copy"
    group: str = ""
    reason: str = ""


def _rules(group: str, official_prefix: str, our_prefix: str, inner: Iterable[tuple[str, str, Transform]],
           *, video_only: bool = False) -> list[KeyRule]:
    """Rules for `official_prefix + inner_regex` -> `our_prefix + inner_template`."""
    return [KeyRule(group=group, pattern=re.compile(re.escape(official_prefix) + regex),
                    ours=our_prefix + template, transform=transform, video_only=video_only)
            for regex, template, transform in inner]


def _resnet_stage(match: re.Match[str]) -> str:
    # detectron2 res2..res5 are torchvision layer1..layer4.
    return f"layer{int(match['r']) - 1}"


def _resnet_rules(group: str, official_prefix: str, our_prefix: str, *, video_only: bool) -> list[KeyRule]:
    """detectron2 ResNet (STRIDE_IN_1X1 False, FrozenBN) -> torchvision ResNet names."""
    p = re.escape(official_prefix)
    block = r"res(?P<r>[2-5])\.(?P<i>\d+)\."
    specs: list[tuple[str, Callable[[re.Match[str]], str]]] = [
        (r"stem\.conv1\.weight", lambda m: "conv1.weight"),
        (rf"stem\.conv1\.norm\.{_NORM_STATS}", lambda m: f"bn1.{m['p']}"),
        (rf"{block}conv(?P<k>[1-3])\.weight", lambda m: f"{_resnet_stage(m)}.{m['i']}.conv{m['k']}.weight"),
        (rf"{block}conv(?P<k>[1-3])\.norm\.{_NORM_STATS}",
         lambda m: f"{_resnet_stage(m)}.{m['i']}.bn{m['k']}.{m['p']}"),
        (rf"{block}shortcut\.weight", lambda m: f"{_resnet_stage(m)}.{m['i']}.downsample.0.weight"),
        (rf"{block}shortcut\.norm\.{_NORM_STATS}", lambda m: f"{_resnet_stage(m)}.{m['i']}.downsample.1.{m['p']}"),
    ]

    def prefixed(function: Callable[[re.Match[str]], str]) -> Callable[[re.Match[str]], str]:
        return lambda m: our_prefix + function(m)

    return [KeyRule(group=group, pattern=re.compile(p + regex), ours=prefixed(function), video_only=video_only)
            for regex, function in specs]


# ConvNeXt: LayerNorm weight/bias and layer-scale gamma are nn.Embedding(1, C) in the official copy.
_CONVNEXT_INNER: list[tuple[str, str, Transform]] = [
    (rf"downsample_layers\.0\.0\.{_W}", r"downsample_layers.0.0.\g<p>", "copy"),
    (rf"downsample_layers\.0\.1\.{_W}\.weight", r"downsample_layers.0.1.\g<p>", "squeeze_embedding"),
    (rf"downsample_layers\.(?P<d>[1-3])\.0\.{_W}\.weight", r"downsample_layers.\g<d>.0.\g<p>", "squeeze_embedding"),
    (rf"downsample_layers\.(?P<d>[1-3])\.1\.{_W}", r"downsample_layers.\g<d>.1.\g<p>", "copy"),
    (rf"stages\.(?P<s>[0-3])\.(?P<b>\d+)\.(?P<m>dwconv|pwconv1|pwconv2)\.{_W}",
     r"stages.\g<s>.\g<b>.\g<m>.\g<p>", "copy"),
    (rf"stages\.(?P<s>[0-3])\.(?P<b>\d+)\.norm\.{_W}\.weight", r"stages.\g<s>.\g<b>.norm.\g<p>", "squeeze_embedding"),
    (r"stages\.(?P<s>[0-3])\.(?P<b>\d+)\.gamma\.weight", r"stages.\g<s>.\g<b>.gamma", "squeeze_embedding"),
    (rf"norm(?P<o>[1-3])\.{_W}\.weight", r"norm\g<o>.\g<p>", "squeeze_embedding"),
]

# ViTDet-style ViT: our names are the official ones.
_VIT_INNER: list[tuple[str, str, Transform]] = [
    (r"pos_embed", "pos_embed", "copy"),
    (rf"patch_embed\.proj\.{_W}", r"patch_embed.proj.\g<p>", "copy"),
    (rf"blocks\.{_N}\.(?P<m>norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.{_W}",
     r"blocks.\g<n>.\g<m>.\g<p>", "copy"),
    (rf"blocks\.{_N}\.attn\.(?P<r>rel_pos_h|rel_pos_w)", r"blocks.\g<n>.attn.\g<r>", "copy"),
    (rf"fpn1\.0\.{_W}", r"fpn1.0.\g<p>", "copy"),
]

_DEFORM_ATTN = r"(?P<m>sampling_offsets|attention_weights|value_proj|output_proj)"

_ENCODER_LAYER_INNER: list[tuple[str, str, Transform]] = [
    (rf"{_N}\.self_attn\.{_DEFORM_ATTN}\.{_W}", r"\g<n>.self_attn.\g<m>.\g<p>", "copy"),
    (rf"{_N}\.norm1\.{_W}", r"\g<n>.norm_self_attn.\g<p>", "copy"),
    (rf"{_N}\.norm2\.{_W}", r"\g<n>.norm_ffn.\g<p>", "copy"),
    (rf"{_N}\.(?P<m>linear1|linear2)\.{_W}", r"\g<n>.\g<m>.\g<p>", "copy"),
]

_DECODER_LAYER_INNER: list[tuple[str, str, Transform]] = [
    (rf"{_N}\.cross_attn\.{_DEFORM_ATTN}\.{_W}", r"\g<n>.cross_attn.\g<m>.\g<p>", "copy"),
    (rf"{_N}\.self_attn\.(?P<m>in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias)",
     r"\g<n>.self_attn.\g<m>", "copy"),
    (rf"{_N}\.norm1\.{_W}", r"\g<n>.norm_cross_attn.\g<p>", "copy"),
    (rf"{_N}\.norm2\.{_W}", r"\g<n>.norm_self_attn.\g<p>", "copy"),
    (rf"{_N}\.norm3\.{_W}", r"\g<n>.norm_ffn.\g<p>", "copy"),
    (rf"{_N}\.(?P<m>linear1|linear2)\.{_W}", r"\g<n>.\g<m>.\g<p>", "copy"),
]

_MLP_INNER: list[tuple[str, str, Transform]] = [(rf"layers\.{_N}\.{_W}", r"layers.\g<n>.\g<p>", "copy")]

_FUSION_INNER: list[tuple[str, str, Transform]] = [
    (r"(?P<g>gamma_v|gamma_l)", r"\g<g>", "copy"),
    (rf"(?P<m>layer_norm_v|layer_norm_l)\.{_W}", r"\g<m>.\g<p>", "copy"),
    (rf"attn\.(?P<m>v_proj|l_proj|values_v_proj|values_l_proj|out_v_proj|out_l_proj)\.{_W}", r"attn.\g<m>.\g<p>",
     "copy"),
]

_RESIZER_INNER: list[tuple[str, str, Transform]] = [(rf"(?P<m>fc|layer_norm)\.{_W}", r"\g<m>.\g<p>", "copy")]

_CLASS_EMBED_INNER: list[tuple[str, str, Transform]] = [
    (r"(?P<n>\d+)\.(?P<m>log_scale|bias_lang|bias0)", r"\g<n>.\g<m>", "copy"),
    (rf"{_N}\.dot_product_projection_text\.{_W}", r"\g<n>.dot_product_projection_text.\g<p>", "copy"),
    (rf"{_N}\.body\.{_W}", r"\g<n>.body.\g<p>", "copy"),  # StillClassifier (encoder objectness)
]

_BBOX_EMBED_INNER: list[tuple[str, str, Transform]] = [
    (rf"{_N}\.layers\.(?P<j>\d+)\.{_W}", r"\g<n>.layers.\g<j>.\g<p>", "copy"),
]


def _backbone_rules(kind: BackboneKind, group: str, official_prefix: str, our_prefix: str, *,
                    video_only: bool) -> list[KeyRule]:
    match kind:
        case "resnet18" | "resnet50":
            return _resnet_rules(group, official_prefix, our_prefix, video_only=video_only)
        case "convnext_large":
            return _rules(group, official_prefix, our_prefix, _CONVNEXT_INNER, video_only=video_only)
        case "vit_huge":
            return _rules(group, official_prefix, our_prefix, _VIT_INNER, video_only=video_only)
        case _:
            raise ValueError(f"unknown backbone kind {kind!r}; expected resnet18, resnet50, convnext_large or "
                             f"vit_huge")


def key_rules(backbone: BackboneKind) -> list[KeyRule]:
    """Every tensor rule for a model with backbone `backbone` (video-only rules flagged), in checkpoint order."""
    t = "detr.detr.transformer."
    return [
        *_rules("text_encoder", TEXT_ENCODER_PREFIX, "text_encoder.model.",
                [(r"(?P<rest>(embeddings|encoder)\..+)", r"\g<rest>", "copy")]),
        *_backbone_rules(backbone, "backbone", MAIN_BACKBONE_PREFIX, "backbone.body.", video_only=False),
        *_backbone_rules(backbone, "template_backbone", TEMPLATE_BACKBONE_PREFIX, "template_encoder.backbone.body.",
                         video_only=True),
        *_rules("input_proj", "detr.detr.input_proj.", "input_proj.levels.",
                [(rf"(?P<l>[0-3])\.(?P<j>[01])\.{_W}", r"\g<l>.\g<j>.\g<p>", "copy")]),
        *_rules("transformer", t, "transformer.", [
            (r"level_embed", "level_embed", "copy"),
            (r"tgt_embed\.weight", "tgt_embed.weight", "copy"),
            (rf"(?P<m>enc_output|enc_output_norm)\.{_W}", r"\g<m>.\g<p>", "copy"),
        ]),
        *_rules("fusion", t + "encoder.vl_layers.0.b_attn.", "transformer.fusion.", _FUSION_INNER),
        *_rules("encoder", t + "encoder.layers.", "transformer.encoder.layers.", _ENCODER_LAYER_INNER),
        *_rules("decoder", t + "decoder.layers.", "transformer.decoder.layers.", _DECODER_LAYER_INNER),
        *_rules("decoder", t + "decoder.ref_point_head.", "transformer.decoder.ref_point_head.", _MLP_INNER),
        *_rules("transformer_resizer", t + "resizer.", "transformer.resizer.", _RESIZER_INNER),
        *_rules("class_embed", "detr.detr.class_embed.", "class_embed.", _CLASS_EMBED_INNER),
        *_rules("bbox_embed", "detr.detr.bbox_embed.", "bbox_embed.", _BBOX_EMBED_INNER),
        *_rules("iou_head", "detr.detr.iou_head.", "iou_head.", [(rf"{_N}\.{_W}", r"\g<n>.\g<p>", "copy")]),
        *_rules("controller", "detr.controller.", "controller.", _MLP_INNER),
        *_rules("mask_head", "detr.mask_head.", "mask_head.",
                [(rf"(?P<m>lay1|lay2|lay3|lay4|jia_dcn)\.{_W}", r"\g<m>.\g<p>", "copy")]),
        *_rules("resizer", "detr.resizer.", "resizer.", _RESIZER_INNER),
        *_rules("reid_head", "detr.reid_embed_head.0.layers.", "reid_head.layers.", _DECODER_LAYER_INNER,
                video_only=True),
        *_rules("reid_head", "detr.reid_embed_head.0.ref_point_head.", "reid_head.ref_point_head.", _MLP_INNER,
                video_only=True),
        *_rules("reid_head", "detr.reid_embed_head.1.", "reid_head.embed.", _MLP_INNER, video_only=True),
        *_rules("sot_fuser", "detr.sot_fuser.", "template_encoder.sot_fuser.",
                [(rf"refine\.{_N}\.{_W}", r"refine.\g<n>.\g<p>", "copy")], video_only=True),
        *_rules("adjust_layer", "detr.adjust_layer.", "template_encoder.adjust_layer.", [(_W, r"\g<p>", "copy")],
                video_only=True),
    ]


# The decoder holds the top-level class/bbox heads under a second name (official `transformer.decoder.bbox_embed =
# self.bbox_embed`), so detectron2 saves every one of their tensors twice.
_ALIASES = [
    (re.compile(r"detr\.detr\.transformer\.decoder\.(?P<rest>(class_embed|bbox_embed)\..+)"),
     r"detr.detr.\g<rest>"),
]

_SQUEEZE_SUFFIXES = (".weight.weight", ".bias.weight", "gamma.weight")


class OfficialKeyMap:
    """Maps official keys for one target model (backbone kind and image/video variant).

    Args:
        backbone: the target's backbone kind; only its backbone rules apply.
        video: True for a video model (template branch, re-ID head); False marks video-only keys "video_only".
    """

    def __init__(self, *, backbone: BackboneKind, video: bool) -> None:
        self.backbone = backbone
        self.video = video
        self.rules = key_rules(backbone)

    def map(self, key: str) -> KeyMapping:
        """What to do with official key `key` (see KeyMapping)."""
        if key in SKIP_REASONS:
            return KeyMapping(kind="skip", ours=None, group="skipped", reason=SKIP_REASONS[key])
        for pattern, canonical in _ALIASES:
            match = pattern.fullmatch(key)
            if match:
                return KeyMapping(kind="alias", ours=None, canonical=match.expand(canonical), group="alias")
        for rule in self.rules:
            match = rule.pattern.fullmatch(key)
            if match:
                ours = rule.target(match)
                if rule.video_only and not self.video:
                    return KeyMapping(kind="video_only", ours=ours, transform=rule.transform, group=rule.group,
                                      reason=VIDEO_ONLY_REASON)
                return KeyMapping(kind="tensor", ours=ours, transform=rule.transform, group=rule.group)
        return KeyMapping(kind="unknown", ours=None)


def detect_backbone_kind(keys: Iterable[str]) -> BackboneKind | None:
    """Backbone of an official checkpoint from its main-backbone keys: "resnet50", "convnext_large", "vit_huge"
    (by the characteristic key names), or None when there are no recognisable backbone keys."""
    inner = [k[len(MAIN_BACKBONE_PREFIX):] for k in keys if k.startswith(MAIN_BACKBONE_PREFIX)]
    if any(k.startswith("stem.conv1.") for k in inner):
        return "resnet50"
    if any(k.startswith("downsample_layers.") and k.endswith(_SQUEEZE_SUFFIXES) for k in inner):
        return "convnext_large"
    if any(k.startswith(("patch_embed.", "blocks.")) for k in inner):
        return "vit_huge"
    return None


def is_video_checkpoint(keys: Iterable[str]) -> bool:
    """True when an official checkpoint holds video-stage modules (template backbone, re-ID head, fuser, adjust)."""
    prefixes = (TEMPLATE_BACKBONE_PREFIX, "detr.reid_embed_head.", "detr.sot_fuser.", "detr.adjust_layer.")
    return any(k.startswith(prefixes) for k in keys)
