"""`training.fit_retrieval`: `cache` writes resumable chunks from a recipe's stream, `fit` writes weights in which only
the retrieval side moved, and bad input (no init, trunk parameters to fit, no cache) is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from training.fit_retrieval import main
from uninext_core.checkpoint.safetensors_io import read_weights
from uninext_core.data.synthetic.__main__ import main as synth_main
from uninext_core.train.retrieval_fit import load_frames


@pytest.fixture(scope="module")
def ref_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "ref"
    assert synth_main(["--out", str(out), "--task", "referring", "--seed", "5", "--size", "96", "--num-images",
                       "3"]) == 0
    return out


def write_recipe(path: Path, data: Path, init: Path | str, *, trainable: list[str]) -> Path:
    recipe = {
        "name": "fit_test", "preset": "tiny", "video": True, "stage": 3, "init_checkpoint": str(init),
        "model": {"heads": {"query_colour_grid": 4, "query_relation_layers": 2}},
        "freeze_text_encoder": True,
        "trainable": trainable, "seed": 3, "output_dir": str(path.parent / "out"),
        "solver": {"base_lr": 1e-3, "clip_grad_norm": 0.1},
        "input": {"short_sides": [96], "max_size": 96, "flip_prob": 0.5, "crop_prob": 0.0, "pre_crop_short_sides": [],
                  "crop_range": [96, 96], "clip_frames": 1},
        "datasets": [{"name": "ref", "task": "grounding", "reader": "refcoco",
                      "path": str(data / "annotations" / "instances.json"),
                      "refs": str(data / "annotations" / "refs.json"), "image_root": str(data / "images"),
                      "batch_size": 2, "mask_supervision": "none"}],
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_cache_then_fit(tmp_path, ref_data, random_tiny_checkpoint, capsys):
    torch.set_num_threads(1)
    recipe = write_recipe(tmp_path / "fit.yaml", ref_data, random_tiny_checkpoint,
                          trainable=["query_relation.", "query_colour.", "class_embed.1."])
    cache = tmp_path / "cache"
    assert main(["cache", "--recipe", str(recipe), "--batches", "3", "--chunk", "2", "--out", str(cache),
                 "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["frames_written"] == 6
    chunks = sorted(cache.glob("chunk_*.pt"))
    assert [p.name for p in chunks] == ["chunk_00000.pt", "chunk_00001.pt"]
    first = load_frames(chunks[0])
    assert len(first) == 4 and {f.kind for f in first} == {"expression"}
    # a finished chunk is kept as it is; only missing ones are written again (resuming)
    chunks[1].unlink()
    stamp = chunks[0].stat().st_mtime_ns
    assert main(["cache", "--recipe", str(recipe), "--batches", "3", "--chunk", "2", "--out", str(cache),
                 "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["frames_written"] == 2
    assert chunks[0].stat().st_mtime_ns == stamp and chunks[1].exists()

    out = tmp_path / "fitted.safetensors"
    assert main(["fit", "--recipe", str(recipe), "--cache", str(cache), "--val-cache", str(cache), "--epochs", "2",
                 "--batch-size", "4", "--out", str(out), "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(summary["epochs"]) == 2 and all(0.0 <= e["val_top1"] <= 1.0 for e in summary["epochs"])
    # the best epoch is kept only when it beats the weights the fit started from
    improved = max(e["val_top1"] for e in summary["epochs"]) > summary["val_top1_before"]
    assert out.with_name("fitted_best.safetensors").exists() == improved
    fitted = read_weights(out).state_dict
    init = read_weights(random_tiny_checkpoint).state_dict
    moved = {k for k, v in fitted.items() if not torch.equal(v, init[k])}
    assert moved and all(k.startswith(("query_relation.", "query_colour.", "class_embed.1.")) for k in moved)
    # the untrained relation's output projection starts at zero; the fit taught it something
    assert not init["query_relation.out_proj.weight"].any() and fitted["query_relation.out_proj.weight"].any()
    assert not any(k.startswith("text_encoder.") for k in fitted)


def test_bad_input_is_refused(tmp_path, ref_data, random_tiny_checkpoint, capsys):
    no_init = write_recipe(tmp_path / "a.yaml", ref_data, "", trainable=["query_relation."])
    assert main(["cache", "--recipe", str(no_init), "--batches", "1", "--out", str(tmp_path / "c")]) == 2
    assert "no init_checkpoint" in capsys.readouterr().err
    trunk = write_recipe(tmp_path / "b.yaml", ref_data, random_tiny_checkpoint,
                         trainable=["query_relation.", "backbone."])
    assert main(["fit", "--recipe", str(trunk), "--cache", str(tmp_path), "--epochs", "1",
                 "--out", str(tmp_path / "w.safetensors")]) == 2
    assert "backbone." in capsys.readouterr().err
    fine = write_recipe(tmp_path / "c.yaml", ref_data, random_tiny_checkpoint, trainable=["query_relation."])
    assert main(["fit", "--recipe", str(fine), "--cache", str(tmp_path / "empty"), "--epochs", "1",
                 "--out", str(tmp_path / "w.safetensors")]) == 2
    assert "no cache chunks" in capsys.readouterr().err


def test_shards_write_the_chunks_one_process_writes(tmp_path, ref_data, random_tiny_checkpoint, capsys):
    torch.set_num_threads(1)
    recipe = write_recipe(tmp_path / "fit.yaml", ref_data, random_tiny_checkpoint, trainable=["query_relation."])
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    assert main(["cache", "--recipe", str(recipe), "--batches", "2", "--chunk", "1", "--out", str(whole),
                 "--no-progress"]) == 0
    assert main(["cache", "--recipe", str(recipe), "--batches", "2", "--chunk", "1", "--shard", "1/2",
                 "--out", str(sharded), "--no-progress"]) == 0
    assert [p.name for p in sharded.glob("chunk_*.pt")] == ["chunk_00001.pt"]
    a, b = load_frames(whole / "chunk_00001.pt"), load_frames(sharded / "chunk_00001.pt")
    assert len(a) == len(b) == 2
    assert all(torch.equal(x.hidden, y.hidden) and torch.equal(x.prompt, y.prompt) for x, y in zip(a, b, strict=True))
    assert main(["cache", "--recipe", str(recipe), "--batches", "2", "--shard", "2/2", "--out", str(sharded)]) == 2
    assert "shard" in capsys.readouterr().err
