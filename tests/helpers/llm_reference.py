"""Reference numbers for decoder (LLM-style) transformers, computed in a separate process.

Builds a tiny random Llama (RMSNorm, rotary embeddings, grouped-query attention, SiLU-gated MLP) and a tiny random
GPT-2 (LayerNorm, learned positions, tanh GELU ``gelu_new``) sequence classifier (transformers) with fixed seeds,
exports them to ONNX (TorchScript exporter, opset 17, and the dynamo exporter), and computes in float64 on the same
weights:

* torch autograd gradients of the target logit w.r.t. the input embeddings;
* LXT 2.1 (efficient, Gradient×Input) AttnLRP relevance, seeded with gradient 1 on the target logit.

The explained model is ``inputs_embeds -> logits`` where the logits are the classification head applied to the last
position's hidden state (what the HF ``*ForSequenceClassification`` classes do without padding; they only warn when
given ``inputs_embeds``, so the wrapper calls the base model and the head itself). The wrapper also passes the
additive causal mask (0 on and below the diagonal, ``finfo.min`` above) as a 4D ``attention_mask``: transformers'
own mask builder (``masking_utils.create_causal_mask``) uses ``torch.vmap``, which the TorchScript tracer rejects
(``RuntimeError: unordered_map::at``). GPT-2 applies its own causal ``where`` as well (as it does with HF's mask).

Note: transformers computes Llama's RMSNorm, attention softmax and rotary tables in float32 even for a float64 model
(explicit casts), so the "float64" Llama references carry float32 rounding at those points (rel. ~1e-7).

It runs in its own process because LXT monkey-patches ``modeling_llama``/``modeling_gpt2`` and torch's
``nn.LayerNorm``/``nn.Dropout`` process-wide. Usage: ``python llm_reference.py OUT_DIR [--no-dynamo]``; writes
``llama.onnx``, ``gpt2.onnx`` (``*_dynamo.onnx`` or ``*_dynamo.error``) and ``reference.npz`` (keys
``{llama,gpt2}_{embeds,target,logits,grad,attnlrp}``), and prints the op types of every exported graph.
"""
from __future__ import annotations

import collections
import os
import sys
import warnings

import numpy as np
import torch
from transformer_reference import _grad, _randomize  # this folder is on sys.path when run as a script

LLAMA = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, intermediate_size=64,
             vocab_size=100, max_position_embeddings=32, num_labels=3, pad_token_id=0, initializer_range=0.2)
GPT2 = dict(n_embd=32, n_layer=2, n_head=2, n_inner=64, n_positions=32, vocab_size=100, num_labels=3, pad_token_id=0,
            activation_function="gelu_new", initializer_range=0.2)
BATCH, SEQ = 2, 6


class _LastLogits(torch.nn.Module):
    """``inputs_embeds -> logits``: the classification head on the last position's final hidden state."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, embeds):
        length = embeds.shape[1]
        mask = torch.full((length, length), torch.finfo(embeds.dtype).min, dtype=embeds.dtype).triu(1)[None, None]
        hidden = self.model.base_model(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state
        return self.model.score(hidden[:, -1])


def _op_types(path):
    import onnx
    counts = collections.Counter(n.op_type for n in onnx.load(path).graph.node)
    return ", ".join(f"{k}×{v}" if v > 1 else k for k, v in sorted(counts.items()))


def _export(model, embeds, out_dir, name, dynamo):
    wrapped = _LastLogits(model).eval()
    path = os.path.join(out_dir, f"{name}.onnx")
    torch.onnx.export(wrapped, (embeds,), path, opset_version=17, dynamo=False, input_names=["embeds"],
                      output_names=["logits"], dynamic_axes={"embeds": {0: "N"}, "logits": {0: "N"}})
    print(f"{name}.onnx ops: {_op_types(path)}")
    if dynamo:
        path = os.path.join(out_dir, f"{name}_dynamo.onnx")
        try:
            batch = torch.export.Dim("N", min=1)
            torch.onnx.export(wrapped, (embeds,), path, dynamo=True, input_names=["embeds"], output_names=["logits"],
                              dynamic_shapes=({0: batch},), verbose=False)
            print(f"{name}_dynamo.onnx ops: {_op_types(path)}")
        except Exception as exc:  # the test reports it as a skip
            if os.path.exists(path):
                os.remove(path)
            with open(os.path.join(out_dir, f"{name}_dynamo.error"), "w") as f:
                f.write(f"{type(exc).__name__}: {exc}")
            print(f"{name}_dynamo: export failed: {type(exc).__name__}: {str(exc)[:300]}")


def _reference(name, model_class, config, seed, out_dir, dynamo, ref):
    """Build, check the wrapper against the HF class, export, and record embeds/target/logits/grad."""
    torch.manual_seed(seed)
    model = model_class(config).eval()
    _randomize(model, seed + 1)
    embeds = torch.randn(BATCH, SEQ, config.hidden_size, generator=torch.Generator().manual_seed(seed + 2))
    with torch.no_grad():  # the HF class takes the last position when given inputs_embeds (and warns)
        np.testing.assert_allclose(_LastLogits(model)(embeds).numpy(),
                                   model(inputs_embeds=embeds, use_cache=False).logits.numpy(), rtol=1e-5, atol=1e-6)
    _export(model, embeds, out_dir, name, dynamo)
    wrapped64 = _LastLogits(model.double()).eval()
    with torch.no_grad():
        target = wrapped64(embeds.double()).argmax(1)
    ref[f"{name}_embeds"], ref[f"{name}_target"] = embeds.numpy(), target.numpy()
    ref[f"{name}_logits"], ref[f"{name}_grad"] = _grad(wrapped64, embeds.double(), target)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _attnlrp(name, module, model_class, config, state, ref):
    """LXT AttnLRP on a model rebuilt from the patched classes with the same weights."""
    from lxt.efficient import monkey_patch
    monkey_patch(module)
    lxt_model = model_class(config).eval()
    lxt_model.load_state_dict(state)
    lxt_model = _LastLogits(lxt_model.double()).eval()
    embeds = torch.as_tensor(ref[f"{name}_embeds"]).double()
    out, grad = _grad(lxt_model, embeds, torch.as_tensor(ref[f"{name}_target"]))
    np.testing.assert_allclose(out, ref[f"{name}_logits"], rtol=1e-10, atol=1e-12)  # patched forward is unchanged
    ref[f"{name}_attnlrp"] = embeds.numpy() * grad


def main(out_dir: str, dynamo: bool = True) -> None:
    warnings.filterwarnings("ignore")
    import transformers.models.gpt2.modeling_gpt2 as modeling_gpt2
    import transformers.models.llama.modeling_llama as modeling_llama
    from transformers import GPT2Config, LlamaConfig
    from transformers.utils import logging
    logging.set_verbosity_error()

    llama_config = LlamaConfig(**LLAMA, attn_implementation="eager")
    gpt2_config = GPT2Config(**GPT2, attn_implementation="eager")
    ref: dict[str, np.ndarray] = {}
    llama_state = _reference("llama", modeling_llama.LlamaForSequenceClassification, llama_config, 10, out_dir,
                             dynamo, ref)
    gpt2_state = _reference("gpt2", modeling_gpt2.GPT2ForSequenceClassification, gpt2_config, 20, out_dir, dynamo, ref)

    # ---- LXT (patches process-wide from here on)
    _attnlrp("llama", modeling_llama, modeling_llama.LlamaForSequenceClassification, llama_config, llama_state, ref)
    _attnlrp("gpt2", modeling_gpt2, modeling_gpt2.GPT2ForSequenceClassification, gpt2_config, gpt2_state, ref)
    np.savez(os.path.join(out_dir, "reference.npz"), **ref)


if __name__ == "__main__":
    main(sys.argv[1], dynamo="--no-dynamo" not in sys.argv[2:])
