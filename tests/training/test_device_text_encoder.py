"""training.device_text_encoder: the packed MiniLM gives the real encoder's features on the data's texts, and a text
it was not packed for is refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training import device_text_encoder
from uninext_core.config import tiny
from uninext_core.model.text_encoder import build_text_encoder

TEXTS = ["the red hexagon left of the blue star", "circle. square. triangle.", "the second ring from the left"]


def _data(folder: Path, texts: list[str]) -> Path:
    folder.mkdir(parents=True)
    (folder / "refs.json").write_text(json.dumps([{"sentences": [{"sent": t}], "segmentation": {"counts": "x9Zq2"}}
                                                  for t in texts]))
    return folder


@pytest.mark.slow
def test_unpacked_encoder_matches_the_packaged_one_on_the_data_and_refuses_other_words(tmp_path) -> None:
    data = _data(tmp_path / "data", TEXTS)
    packed = tmp_path / "packed"
    summary = device_text_encoder.pack([data], packed)
    assert summary["kept_ids"] < 100 and summary["bytes"] < 25e6  # float16 without most embedding rows
    site = tmp_path / "site"
    device_text_encoder.unpack(packed, site, [data])

    # Read the rebuilt package in a fresh interpreter, where it shadows the installed one.
    script = ("import json, sys, torch\n"
              "from uninext_core.config import tiny\n"
              "from uninext_core.model.text_encoder import build_text_encoder, packaged_minilm_path\n"
              f"assert str(packaged_minilm_path()).startswith({str(site)!r}), packaged_minilm_path()\n"
              "encoder = build_text_encoder(tiny().text).eval()\n"
              "ids, mask = encoder.tokenize(json.loads(sys.argv[1]))\n"
              "with torch.no_grad():\n"
              "    torch.save(encoder(ids, mask).hidden, sys.argv[2])\n")
    out = tmp_path / "features.pt"
    env = {"PYTHONPATH": f"{site}:{Path.cwd()}", "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", script, json.dumps(TEXTS), str(out)], check=True, env=env, timeout=300)
    rebuilt = torch.load(out, weights_only=True)
    real = build_text_encoder(tiny().text).eval()
    ids, mask = real.tokenize(TEXTS)
    with torch.no_grad():
        reference = real(ids, mask).hidden
    valid = mask.bool()
    # float16 weights: the features agree to about 1e-2 of their scale
    assert (rebuilt[valid] - reference[valid]).abs().max() < 0.02 * reference[valid].abs().max()

    other = _data(tmp_path / "other", ["a purple dodecahedron"])
    with pytest.raises(ValueError, match="not packed"):
        device_text_encoder.unpack(packed, tmp_path / "site2", [other])
