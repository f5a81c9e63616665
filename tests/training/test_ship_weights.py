"""`training.ship_weights`: a training checkpoint -> the weights the package ships (video model, fp16, no text
encoder), loadable by the serving path."""

from __future__ import annotations

import torch

from training.ship_weights import SIZE_LIMIT_BYTES, main, shipped_is_final
from uninext_core.checkpoint import load_model
from uninext_core.config import tiny
from uninext_core.model.build import build_model
from uninext_core.train import checkpointing as ckpt


def test_an_image_checkpoint_ships_as_the_video_model_in_float16_without_the_text_encoder(tmp_path, capsys) -> None:
    torch.manual_seed(0)
    config = tiny(video=False)
    trained = build_model(config)
    source = ckpt.save_model(trained, tmp_path / "model_0000300.safetensors", config=config, step=300)
    out = tmp_path / "assets" / "uninext_tiny.safetensors"

    assert main(["--checkpoint", str(source), "--out", str(out)]) == 0
    assert '"source_step": 300' in capsys.readouterr().out

    stored = ckpt.read_checkpoint(out)
    assert stored.config.video and stored.config.template.enabled and stored.config.heads.reid
    assert stored.metadata[ckpt.STEP_KEY] == "300"
    assert not any(k.startswith("text_encoder.") for k in stored.state_dict)
    assert all(t.dtype == torch.float16 for t in stored.state_dict.values() if t.is_floating_point())
    assert out.stat().st_size <= SIZE_LIMIT_BYTES

    served = load_model(out, preset="tiny", video=True)
    source_state = trained.state_dict()
    for key, tensor in served.state_dict().items():
        if key.startswith("text_encoder."):  # refilled from the package in float32
            assert torch.equal(tensor, source_state[key]), key
        elif key in source_state and tensor.is_floating_point():
            torch.testing.assert_close(tensor, source_state[key].half().float(), rtol=0, atol=0, msg=key)
    # The template backbone starts as the image backbone with a zero 4th (mask) input channel, as stage 3 does.
    first_template_conv = next(v for k, v in served.state_dict().items()
                               if k.startswith("template_encoder.backbone.") and v.dim() == 4)
    first_image_conv = next(v for k, v in source_state.items() if k.startswith("backbone.") and v.dim() == 4)
    torch.testing.assert_close(first_template_conv[:, :3], first_image_conv.half().float(), rtol=0, atol=0)
    assert torch.count_nonzero(first_template_conv[:, 3]) == 0


def test_bad_inputs_are_refused_with_exit_status_2(tmp_path, capsys) -> None:
    missing = tmp_path / "nope.safetensors"
    assert main(["--checkpoint", str(missing), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "does not exist" in capsys.readouterr().err
    config = tiny(video=False)
    source = ckpt.save_model(build_model(config), tmp_path / "m.safetensors", config=config)
    assert main(["--checkpoint", str(source), "--out", str(tmp_path / "x.safetensors"),
                 "--precise-bn-batches", "4"]) == 2
    assert "needs --recipe" in capsys.readouterr().err


def test_only_the_end_of_the_video_stage_ships_as_final(tmp_path) -> None:
    config = tiny(video=True)
    model = build_model(config)
    final = ckpt.save_model(model, tmp_path / "stage3" / "model_final.safetensors", config=config, step=6000)
    interim = ckpt.save_model(model, tmp_path / "stage3" / "model_0004000.safetensors", config=config, step=4000)
    for source, expected in ((final, True), (interim, False)):
        out = tmp_path / f"shipped_{source.stem}.safetensors"
        assert main(["--checkpoint", str(source), "--out", str(out)]) == 0
        assert shipped_is_final(out) is expected
        assert ckpt.read_checkpoint(out).metadata["shipped.source"] == source.name
    # A stage that ends by time (--max-minutes) has no model_final: its last checkpoint is marked by hand.
    out = tmp_path / "shipped_by_time.safetensors"
    assert main(["--checkpoint", str(interim), "--out", str(out), "--end-of-stage"]) == 0
    assert shipped_is_final(out)


def test_keep_variant_gives_a_compact_image_start_for_the_next_stage(tmp_path) -> None:
    torch.manual_seed(1)
    config = tiny(video=False)
    trained = build_model(config)
    source = ckpt.save_model(trained, tmp_path / "model_final.safetensors", config=config, step=6000)
    compact = tmp_path / "tiny_stage1_final.safetensors"
    assert main(["--checkpoint", str(source), "--out", str(compact), "--keep-variant"]) == 0
    assert not ckpt.read_checkpoint(compact).config.video
    next_stage = build_model(config)
    assert ckpt.init_from_checkpoint(next_stage, compact, config=config) == []  # every tensor filled
    for key, tensor in next_stage.state_dict().items():
        if tensor.is_floating_point() and not key.startswith("text_encoder."):
            torch.testing.assert_close(tensor, trained.state_dict()[key].half().float(), rtol=0, atol=0, msg=key)
