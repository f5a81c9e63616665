from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from uninext_core.data.coco_names import COCO_NAMES
from uninext_core.model.text_encoder import packaged_minilm_path
from uninext_core.prompts import (
    CategoryPrompt,
    ExpressionPrompt,
    TemplatePrompt,
    TemplateTarget,
    build_category_caption,
    clean_category_name,
    clean_expression,
)


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(str(packaged_minilm_path()), local_files_only=True)


@pytest.mark.parametrize(("raw", "clean"), [
    ("person", "person"),
    ("Traffic_Light", "traffic light"),
    ("bow_(weapon)", "bow"),
    ("  Teddy   Bear (toy) ", "teddy bear"),
    ("(a) b (c) d", "b d"),
])
def test_clean_category_name(raw, clean):
    assert clean_category_name(raw) == clean


@pytest.mark.parametrize(("raw", "clean"), [
    ("The man, on the LEFT!", "the man on the left"),
    ("woman's  bag\t(red)", "womans bag red"),
    ("   ...   ", ""),
])
def test_clean_expression(raw, clean):
    assert clean_expression(raw) == clean


def test_category_prompt_validation():
    prompt = CategoryPrompt(["Person", "traffic_light"])
    assert prompt.names == ("Person", "traffic_light")
    assert prompt.caption_names == ("person", "traffic light")
    with pytest.raises(ValueError, match="empty"):
        CategoryPrompt(())
    with pytest.raises(ValueError, match="empty after cleaning"):
        CategoryPrompt(("cat", "(nothing)"))
    with pytest.raises(ValueError, match="duplicate"):
        CategoryPrompt(("Traffic light", "traffic_light"))
    with pytest.raises(ValueError, match="single string"):
        CategoryPrompt("person")


def test_expression_prompt_validation():
    assert ExpressionPrompt("The dog, left!").cleaned == "the dog left"
    with pytest.raises(ValueError, match="empty"):
        ExpressionPrompt(" ?! ")


def test_template_target_validation():
    mask = np.zeros((4, 6), dtype=bool)
    mask[1:3, 2:5] = True
    assert TemplateTarget(1, None, mask).resolved_box_xyxy() == (2.0, 1.0, 5.0, 3.0)
    assert TemplateTarget(2, (1, 2, 3, 4), None).box_xyxy == (1.0, 2.0, 3.0, 4.0)
    with pytest.raises(ValueError, match="x_max > x_min"):
        TemplateTarget(1, (5.0, 0.0, 5.0, 3.0), None)
    with pytest.raises(ValueError, match="x_max > x_min"):
        TemplateTarget(1, (0.0, 4.0, 5.0, 3.0), None)
    with pytest.raises(ValueError, match="neither"):
        TemplateTarget(1, None, None)
    with pytest.raises(ValueError, match="2-D bool"):
        TemplateTarget(1, None, mask.astype(np.uint8))
    with pytest.raises(ValueError, match="2-D bool"):
        TemplateTarget(1, None, np.ones((2, 2, 1), dtype=bool))
    with pytest.raises(ValueError, match="no foreground"):
        TemplateTarget(1, None, np.zeros((2, 2), dtype=bool))
    with pytest.raises(ValueError, match="finite"):
        TemplateTarget(1, (0.0, 0.0, float("nan"), 1.0), None)
    with pytest.raises(ValueError, match="non-negative int"):
        TemplateTarget(-1, (0.0, 0.0, 1.0, 1.0), None)


def test_template_prompt_validation():
    box = (0.0, 0.0, 2.0, 2.0)
    prompt = TemplatePrompt([TemplateTarget(3, box), TemplateTarget(5, box)], frame_stamp_ns=10)
    assert [t.object_id for t in prompt.targets] == [3, 5]
    with pytest.raises(ValueError, match="no target"):
        TemplatePrompt((), frame_stamp_ns=0)
    with pytest.raises(ValueError, match=r"duplicate object ids \[3\]"):
        TemplatePrompt((TemplateTarget(3, box), TemplateTarget(3, box)), frame_stamp_ns=0)
    with pytest.raises(ValueError, match="frame_stamp_ns"):
        TemplatePrompt((TemplateTarget(3, box),), frame_stamp_ns=-5)
    image = np.zeros((4, 6, 3), dtype=np.uint8)
    mask = np.ones((4, 5), dtype=bool)
    with pytest.raises(ValueError, match="do not match the image size"):
        TemplatePrompt((TemplateTarget(3, None, mask),), frame_stamp_ns=0, image=image)
    with pytest.raises(ValueError, match="uint8"):
        TemplatePrompt((TemplateTarget(3, box),), frame_stamp_ns=0, image=image.astype(np.float32))


def test_category_caption_spans_hand_checked(tokenizer):
    caption = build_category_caption(["person", "Bicycle"], tokenizer, max_tokens=16)
    assert caption.caption == "person. bicycle"
    assert caption.names == ("person", "bicycle")
    # [CLS] person . bicycle [SEP]
    assert caption.token_spans == ((1,), (3,))
    assert caption.input_ids.shape == (1, 16) and caption.input_ids.dtype == torch.int64
    assert caption.input_ids[0, :6].tolist() == [101, 2711, 1012, 10165, 102, 0]
    assert caption.attention_mask[0].tolist() == [1] * 5 + [0] * 11


def test_category_caption_multi_token_names(tokenizer):
    # [CLS] traffic light . tooth ##brush . hair dr ##ier [SEP]
    caption = build_category_caption(["traffic_light", "toothbrush", "hair drier"], tokenizer, max_tokens=16)
    assert caption.caption == "traffic light. toothbrush. hair drier"
    assert caption.token_spans == ((1, 2), (4, 5), (7, 8, 9))


def test_coco_caption_spans_tokens_1_to_192(tokenizer):
    caption = build_category_caption(COCO_NAMES, tokenizer)
    assert len(caption.token_spans) == 80
    assert caption.token_spans[0] == (1,)
    assert caption.token_spans[-1][-1] == 192  # reference §2.1
    assert int(caption.attention_mask.sum()) == 194
    flat = [i for span in caption.token_spans for i in span]
    assert flat == sorted(flat) and len(set(flat)) == len(flat)


def test_class_token_matrix_averages_spans(tokenizer):
    caption = build_category_caption(["person", "traffic light"], tokenizer, max_tokens=8)
    matrix = caption.class_token_matrix()
    expected = torch.zeros(2, 8)
    expected[0, 1] = 1.0
    expected[1, 3] = expected[1, 4] = 0.5
    assert torch.equal(matrix, expected)
    token_logits = torch.tensor([[0.0, 2.0, 9.0, 4.0, 6.0, 0.0, 0.0, 0.0]])
    assert torch.equal(token_logits @ matrix.T, torch.tensor([[2.0, 5.0]]))


def test_caption_overflow_names_first_class_that_does_not_fit(tokenizer):
    # [CLS] person . bicycle . car [SEP] = 7 tokens
    assert build_category_caption(["person", "bicycle", "car"], tokenizer, max_tokens=7).token_spans[-1] == (5,)
    with pytest.raises(ValueError, match="class 'car'"):
        build_category_caption(["person", "bicycle", "car"], tokenizer, max_tokens=6)
    with pytest.raises(ValueError, match="class 'bicycle'"):
        build_category_caption(["person", "bicycle", "car"], tokenizer, max_tokens=4)


def test_caption_rejects_invalid_names(tokenizer):
    with pytest.raises(ValueError, match="duplicate"):
        build_category_caption(["cat", "Cat"], tokenizer)
    with pytest.raises(ValueError, match="empty"):
        build_category_caption([], tokenizer)
