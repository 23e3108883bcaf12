"""Hugging Face conformance check for bench/gpu/hf-conformance.sh (the GPU machine: PyTorch, transformers, no network).

make:    random-initialised tiny models of each architecture Loom reads, built with transformers, saved with
         save_pretrained into OUT/hf/NAME; transformers' logits (CPU, float32, eager attention) for fixed tokens in
         OUT/ref/NAME.safetensors, and the loom-bench flags for the same tokens in OUT/ref/NAME.args.
compare: Loom's logits (OUT/loom/NAME.DEVICE.safetensors, written by `loom-bench hf-logits`) against transformers'
         as a markdown table: max |difference| per architecture and device, PASS under 1e-4.
"""
import argparse
import json
import os
import sys
import traceback

import torch

TOLERANCE = 1e-4
TOKENS = [3, 17, 42, 5, 88, 23, 61, 9, 14, 70, 2, 33]       # a decoder's inputs; T5's encoder inputs
DECODER_TOKENS = [0, 7, 19, 44, 3, 81, 26, 50]              # T5's decoder inputs, from decoder_start_token_id 0
VOCAB = 96

# Small shapes shared by the decoders: d 64, 2 layers, 4 query heads of 16, 2 key/value heads, MLP 128.
DECODER = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=64)


def models():
    """(name, config class, model class, config kwargs) for every architecture checked."""
    import transformers as t
    return [
        ("gpt2", t.GPT2Config, t.GPT2LMHeadModel, dict(vocab_size=VOCAB, n_positions=64, n_embd=64, n_layer=2, n_head=4)),
        ("llama", t.LlamaConfig, t.LlamaForCausalLM, dict(DECODER, rope_theta=500000.0)),
        ("gemma", t.GemmaConfig, t.GemmaForCausalLM, dict(DECODER, num_key_value_heads=1, head_dim=16)),
        ("gemma2", t.Gemma2Config, t.Gemma2ForCausalLM, dict(DECODER, head_dim=16, query_pre_attn_scalar=16, sliding_window=4096)),
        ("mistral", t.MistralConfig, t.MistralForCausalLM, dict(DECODER, sliding_window=None)),
        ("mixtral", t.MixtralConfig, t.MixtralForCausalLM, dict(DECODER, num_local_experts=4, num_experts_per_tok=2, sliding_window=None)),
        ("t5", t.T5Config, t.T5ForConditionalGeneration, dict(
            vocab_size=VOCAB, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
            relative_attention_num_buckets=8, relative_attention_max_distance=20, feed_forward_proj="gated-gelu",
            tie_word_embeddings=False, dropout_rate=0.0, decoder_start_token_id=0)),
    ]


def build(config_class, model_class, kwargs):
    try:
        config = config_class(attn_implementation="eager", **kwargs)
    except TypeError:
        config = config_class(**kwargs)
        config._attn_implementation = "eager"
    model = model_class(config).float().eval()
    # Perturb every weight so that norms (initialised to 1, or 0 under Gemma's 1 + w) and biases are not trivial.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def legacy_mixtral_layout(folder):
    """Whether the saved Mixtral has the per-expert w1/w2/w3 layout Loom reads; rewrites a fused layout
    (transformers 5's mlp.experts.gate_up_proj (E, 2F, D), down_proj (E, D, F), mlp.gate) into it if not.
    Returns a note for the results table."""
    from safetensors.torch import load_file, save_file
    files = [f for f in os.listdir(folder) if f.endswith(".safetensors")]
    tensors = {}
    for f in files:
        tensors.update(load_file(os.path.join(folder, f)))
    if any(".block_sparse_moe.experts." in k for k in tensors):
        return "per-expert w1/w2/w3 as saved"
    converted = {}
    for name, value in tensors.items():
        if name.endswith("mlp.experts.gate_up_proj"):
            prefix = name[: -len("mlp.experts.gate_up_proj")]
            ffn = value.shape[1] // 2
            for e in range(value.shape[0]):
                converted[f"{prefix}block_sparse_moe.experts.{e}.w1.weight"] = value[e, :ffn].contiguous()
                converted[f"{prefix}block_sparse_moe.experts.{e}.w3.weight"] = value[e, ffn:].contiguous()
        elif name.endswith("mlp.experts.down_proj"):
            prefix = name[: -len("mlp.experts.down_proj")]
            for e in range(value.shape[0]):
                converted[f"{prefix}block_sparse_moe.experts.{e}.w2.weight"] = value[e].contiguous()
        elif name.endswith("mlp.gate.weight"):
            converted[name.replace("mlp.gate.weight", "block_sparse_moe.gate.weight")] = value
        else:
            converted[name] = value
    for f in files + ["model.safetensors.index.json"]:
        if os.path.exists(os.path.join(folder, f)):
            os.remove(os.path.join(folder, f))
    save_file(converted, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    return "saved fused (transformers 5 layout); rewritten here as per-expert w1/w2/w3"


def make(out):
    import transformers
    from safetensors.torch import save_file
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    for sub in ("hf", "ref", "loom"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    notes = {"transformers": transformers.__version__, "torch": torch.__version__}
    for name, config_class, model_class, kwargs in models():
        try:
            model = build(config_class, model_class, kwargs)
            folder = os.path.join(out, "hf", name)
            model.save_pretrained(folder)  # safetensors, the default since transformers 4.35
            with torch.no_grad():
                if name == "t5":
                    logits = model(input_ids=torch.tensor([TOKENS]), decoder_input_ids=torch.tensor([DECODER_TOKENS])).logits
                    args = f"--encoder-tokens {','.join(map(str, TOKENS))} --tokens {','.join(map(str, DECODER_TOKENS))}"
                else:
                    logits = model(input_ids=torch.tensor([TOKENS])).logits
                    args = f"--tokens {','.join(map(str, TOKENS))}"
            save_file({"logits": logits.float().contiguous()}, os.path.join(out, "ref", f"{name}.safetensors"))
            with open(os.path.join(out, "ref", f"{name}.args"), "w") as f:
                f.write(args)
            note = legacy_mixtral_layout(folder) if name == "mixtral" else ""
            notes[name] = {"class": model_class.__name__, "note": note, "keys": sorted(os.listdir(folder))}
            print(f"{name}: {model_class.__name__} saved, logits {tuple(logits.shape)} {note}", flush=True)
        except Exception as e:  # one architecture failing must not stop the others
            notes[name] = {"class": model_class.__name__, "note": f"transformers failed: {type(e).__name__}: {e}"}
            traceback.print_exc()
    with open(os.path.join(out, "ref", "notes.json"), "w") as f:
        json.dump(notes, f, indent=2)


def last_line(path):
    if not os.path.exists(path):
        return "not run"
    lines = [l.strip() for l in open(path, errors="replace") if l.strip()]
    return lines[-1][:160] if lines else ""


def compare(out):
    from safetensors.torch import load_file
    notes = json.load(open(os.path.join(out, "ref", "notes.json")))
    rows, failed = [], 0
    for name, _, model_class, _ in models():
        reference = os.path.join(out, "ref", f"{name}.safetensors")
        cells, ok = [], True
        for device in ("cpu", "cuda"):
            mine = os.path.join(out, "loom", f"{name}.{device}.safetensors")
            if not os.path.exists(reference):
                cells.append("no reference")
                ok = False
            elif not os.path.exists(mine):
                cells.append("Loom failed: " + last_line(os.path.join(out, "loom", f"{name}.{device}.log")).replace("|", "/"))
                ok = False
            else:
                expected, actual = load_file(reference)["logits"], load_file(mine)["logits"]
                if expected.shape != actual.shape:
                    cells.append(f"shape {tuple(actual.shape)} vs {tuple(expected.shape)}")
                    ok = False
                else:
                    difference = (expected - actual).abs().max().item()
                    cells.append(f"{difference:.2e}")
                    ok &= difference < TOLERANCE
        failed += not ok
        note = notes.get(name, {}).get("note", "")
        rows.append(f"| {name} | {model_class.__name__} | {cells[0]} | {cells[1]} | {'PASS' if ok else 'FAIL'} | {note} |")
    print(f"# Hugging Face conformance: Loom's logits against transformers'\n")
    print(f"transformers {notes.get('transformers')}, torch {notes.get('torch')}; tiny random models saved with save_pretrained,")
    print(f"imported by `loom-bench hf-logits` (HuggingFaceModels.Import); transformers on the CPU in float32 with eager")
    print(f"attention; PASS when max |difference| < {TOLERANCE:g} on both devices.\n")
    print("| model | transformers class | max abs diff, Loom CPU | max abs diff, Loom CUDA | result | note |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 1 if failed else 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("step", choices=["make", "compare"])
    parser.add_argument("--out", required=True)
    a = parser.parse_args()
    if a.step == "make":
        make(a.out)
        return 0
    return compare(a.out)


if __name__ == "__main__":
    sys.exit(main())
