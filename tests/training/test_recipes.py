"""Stage recipes: the shipped ones parse and state the official schedule; bad recipes fail with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from training.train import main
from uninext_core.config import r50
from uninext_core.train.checkpointing import save_model
from uninext_core.train.frame_stores import open_store
from uninext_core.train.recipe import DatasetSpec, load_recipe, recipe_from_dict

RECIPES = Path(__file__).resolve().parents[2] / "training" / "recipes"


def test_every_shipped_recipe_parses() -> None:
    names = sorted(p.stem for p in RECIPES.glob("*.yaml"))
    official = [f"{m}_stage{s}" for m in ("tiny", "r50", "convnext_l", "vit_h") for s in (1, 2, 3)]
    assert names == sorted([*official, "tiny_stage3_continued", "tiny_stage3_rec", "tiny_stage3_colour",
                            "tiny_stage3_colourskip", "tiny_stage3_colourskip_shipped", "tiny_stage3_refonly_probe",
                            "tiny_stage3_querycolour", "tiny_stage3_querycolour_more", "tiny_stage3_relation",
                            "tiny_stage3_relation_heads", "tiny_retrieval_fit", "tiny_retrieval_fit_val",
                            "tiny_resample_fit", "tiny_resample_fit_val", "tiny_gpu_joint", "tiny_gpu_joint_low_lr",
                            "tiny_subject_fit", "tiny_subject_fit_val"])
    for path in RECIPES.glob("*.yaml"):
        recipe = load_recipe(path)
        assert recipe.name == path.stem


def test_official_recipes_state_the_reference_schedule() -> None:
    stage1 = load_recipe(RECIPES / "r50_stage1.yaml")
    assert (stage1.solver.max_iter, stage1.solver.lr_steps, stage1.solver.base_lr) == (340741, (312346,), 2e-4)
    assert stage1.solver.text_encoder_lr == 1e-5 and stage1.solver.backbone_multiplier == 0.1
    assert stage1.solver.clip_grad_norm == 0.1 and stage1.reference_world_size == 32
    assert [d.mask_supervision for d in stage1.datasets] == ["boxinst"]
    stage2 = load_recipe(RECIPES / "r50_stage2.yaml")
    assert (stage2.solver.max_iter, stage2.solver.lr_steps) == (91990, (76658,))
    assert [(d.task, d.ratio) for d in stage2.datasets] == [("detection", 1.0), ("grounding", 1.0)]
    vit2 = load_recipe(RECIPES / "vit_h_stage2.yaml")
    assert (vit2.solver.max_iter, vit2.solver.lr_steps, vit2.reference_world_size) == (48000, (40000,), 32)
    stage3 = load_recipe(RECIPES / "r50_stage3.yaml")
    assert (stage3.solver.max_iter, stage3.solver.lr_steps, stage3.solver.base_lr) == (180000, (150000,), 1e-4)
    assert stage3.freeze_text_encoder and stage3.video and stage3.input.clip_frames == 2
    ratios = {d.name: (d.ratio, d.batch_size) for d in stage3.datasets}
    assert ratios["ytvis_2019_train"] == (0.34, 4) and ratios["bdd_box_track_train"] == (0.72, 2)
    assert ratios["rvos-refcoco-mixed"] == (0.67, 2) and ratios["sot_lasot_train"] == (0.2, 2)
    assert _family_weights(stage3.datasets) == pytest.approx({"vis": 1.02, "mot": 1.0, "expression": 1.0,
                                                              "template": 1.0})
    vit3 = load_recipe(RECIPES / "vit_h_stage3.yaml")
    assert [d.ratio for d in vit3.datasets[:3]] == [0.25, 0.25, 0.5] and vit3.datasets[0].batch_size == 1


def _family_weights(datasets) -> dict[str, float]:
    families = {"vis": 0.0, "mot": 0.0, "expression": 0.0, "template": 0.0}
    for d in datasets:
        family = {"grounding": "expression", "rvos": "expression", "sot": "template", "vos": "template"}
        families[family.get(d.task, d.task)] += d.ratio
    return families


def test_tiny_stage3_continued_starts_from_stage3_and_weights_expressions_and_templates() -> None:
    stage3 = load_recipe(RECIPES / "tiny_stage3.yaml")
    continued = load_recipe(RECIPES / "tiny_stage3_continued.yaml")
    assert continued.init_checkpoint == str(Path(stage3.output_dir) / "model_final.safetensors")
    assert continued.output_dir != stage3.output_dir and continued.seed != stage3.seed
    assert [d.name for d in continued.datasets] == [d.name for d in stage3.datasets]
    assert _family_weights(stage3.datasets) == pytest.approx({"vis": 0.8, "mot": 0.6, "expression": 1.3,
                                                              "template": 1.3})
    assert _family_weights(continued.datasets) == pytest.approx({"vis": 0.5, "mot": 0.3, "expression": 1.6,
                                                                 "template": 1.6})
    assert {d.batch_size for d in stage3.datasets} == {2} and {d.batch_size for d in continued.datasets} == {4}
    assert (continued.solver.max_iter, continued.solver.lr_steps, continued.solver.base_lr) == (3000, (2500,), 1e-4)
    assert continued.input == stage3.input


def _minimal(**changes) -> dict:
    recipe = {"name": "bad", "preset": "tiny", "output_dir": "runs/never",
              "datasets": [{"name": "d", "task": "detection", "reader": "coco", "path": "data/absent.json",
                            "image_root": "data/absent"}]}
    recipe.update(changes)
    return recipe


def test_unknown_keys_are_named() -> None:
    with pytest.raises(ValueError, match=r"bad\.solver: unknown keys \['max_iters'\]"):
        recipe_from_dict(_minimal(solver={"max_iters": 5}), source="bad")
    with pytest.raises(ValueError, match=r"unknown keys \['batch'\]"):
        recipe_from_dict(_minimal(datasets=[{"name": "d", "task": "detection", "reader": "coco", "path": "x",
                                             "batch": 2}]))
    with pytest.raises(ValueError, match="unknown preset 'tiny2'"):
        recipe_from_dict(_minimal(preset="tiny2"))


def test_model_changes_apply_to_the_preset_and_bad_ones_are_named() -> None:
    recipe = recipe_from_dict(_minimal(model={"backbone": {"colour_skip": True}, "text": {"adapter_layers": 2}}))
    cfg = recipe.model_config()
    assert cfg.backbone.colour_skip and cfg.text.adapter_layers == 2
    assert cfg.backbone.kind == "mobilenet_v3_large" and cfg.text.hidden_dim == 384  # the rest is the preset's
    preset = recipe_from_dict(_minimal()).model_config()
    assert (preset.text.adapter_layers, preset.backbone.colour_skip, preset.heads.query_colour_grid,
            preset.heads.query_relation_layers, preset.heads.query_resample_layers,
            preset.heads.prompt_subject) == (0, False, 4, 2, 1, True)
    with pytest.raises(ValueError, match=r"model\.backbone: unknown keys \['colour'\]"):
        recipe_from_dict(_minimal(model={"backbone": {"colour": False}}))
    with pytest.raises(ValueError, match=r"model\.text\.adapter_layers: expected an integer, got 'two'"):
        recipe_from_dict(_minimal(model={"text": {"adapter_layers": "two"}}))
    with pytest.raises(ValueError, match=r"model\.backbone: expected a mapping, got True"):
        recipe_from_dict(_minimal(model={"backbone": True}))


def test_tiny_recipes_build_the_model_they_trained() -> None:
    """Each run keeps building the model it trained (text adapter layers, colour skip, query colour grid, query
    relation layers, query resample layers, prompt subject) whatever the preset gains later."""
    built = {name: load_recipe(RECIPES / f"{name}.yaml").model_config() for name in
             ("tiny_stage1", "tiny_stage2", "tiny_stage3", "tiny_stage3_continued", "tiny_stage3_rec",
              "tiny_stage3_colour", "tiny_stage3_colourskip", "tiny_stage3_colourskip_shipped",
              "tiny_stage3_querycolour", "tiny_stage3_querycolour_more", "tiny_stage3_relation",
              "tiny_stage3_relation_heads", "tiny_retrieval_fit", "tiny_retrieval_fit_val", "tiny_resample_fit",
              "tiny_resample_fit_val", "tiny_gpu_joint", "tiny_gpu_joint_low_lr", "tiny_subject_fit",
              "tiny_subject_fit_val")}
    assert {name: (cfg.text.adapter_layers, cfg.backbone.colour_skip, cfg.heads.query_colour_grid,
                   cfg.heads.query_relation_layers, cfg.heads.query_resample_layers, cfg.heads.prompt_subject)
            for name, cfg in built.items()} == {
        "tiny_stage1": (0, False, 0, 0, 0, False), "tiny_stage2": (0, False, 0, 0, 0, False),
        "tiny_stage3": (0, False, 0, 0, 0, False), "tiny_stage3_continued": (0, False, 0, 0, 0, False),
        "tiny_stage3_rec": (2, False, 0, 0, 0, False), "tiny_stage3_colour": (2, False, 0, 0, 0, False),
        "tiny_stage3_colourskip": (2, True, 0, 0, 0, False),
        "tiny_stage3_colourskip_shipped": (2, True, 0, 0, 0, False),
        "tiny_stage3_querycolour": (0, False, 4, 0, 0, False),
        "tiny_stage3_querycolour_more": (0, False, 4, 0, 0, False),
        "tiny_stage3_relation": (0, False, 4, 2, 0, False), "tiny_stage3_relation_heads": (0, False, 4, 2, 0, False),
        "tiny_retrieval_fit": (0, False, 4, 2, 0, False), "tiny_retrieval_fit_val": (0, False, 4, 2, 0, False),
        "tiny_resample_fit": (0, False, 4, 2, 1, False), "tiny_resample_fit_val": (0, False, 4, 2, 1, False),
        "tiny_gpu_joint": (0, False, 4, 2, 1, False), "tiny_gpu_joint_low_lr": (0, False, 4, 2, 1, False),
        "tiny_subject_fit": (0, False, 4, 2, 1, True), "tiny_subject_fit_val": (0, False, 4, 2, 1, True)}


def test_inconsistent_recipes_are_rejected() -> None:
    with pytest.raises(ValueError, match="cannot use reader 'coco'"):
        DatasetSpec(name="d", task="vos", reader="coco", path="x")
    with pytest.raises(ValueError, match="needs `refs`"):
        DatasetSpec(name="d", task="grounding", reader="refcoco", path="x")
    sot = [{"name": "s", "task": "sot", "reader": "lasot", "path": "x"}]
    with pytest.raises(ValueError, match="need the video model"):
        recipe_from_dict(_minimal(datasets=sot, input={"clip_frames": 2}))
    with pytest.raises(ValueError, match="clip_frames: 2"):
        recipe_from_dict(_minimal(datasets=sot, video=True))


def test_missing_dataset_names_the_dataset_and_path(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"dataset 'd' \(reader coco\): annotation file / dataset root "
                                         r"data/absent.json does not exist"):
        open_store(recipe_from_dict(_minimal()).datasets[0])
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(yaml.safe_dump(_minimal(output_dir=str(tmp_path / "run"))))
    assert main(["--recipe", str(recipe), "--no-progress"]) == 2


def test_cli_rejects_unknown_keys_and_missing_files(tmp_path, capsys) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(yaml.safe_dump(_minimal(learning_rate=0.1)))
    assert main(["--recipe", str(recipe)]) == 2
    assert "unknown keys ['learning_rate']" in capsys.readouterr().err
    assert main(["--recipe", str(tmp_path / "absent.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_init_checkpoint_of_another_preset_is_a_clear_error(tmp_path, capsys) -> None:
    foreign = save_model(nn.Linear(1, 1), tmp_path / "r50.safetensors", config=r50())
    torch.manual_seed(0)
    recipe = tmp_path / "init.yaml"
    recipe.write_text(yaml.safe_dump(_minimal(init_checkpoint=str(foreign), output_dir=str(tmp_path / "run"))))
    assert main(["--recipe", str(recipe), "--no-progress"]) == 2
    assert "holds weights of preset 'r50' (video), but preset 'tiny' (video) was requested" in capsys.readouterr().err
