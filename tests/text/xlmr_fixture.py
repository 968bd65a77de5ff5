"""A tiny XLM-R-style classifier and a sentencepiece-style tokenizer, built offline for the text tests.

The tokenizer is a ``tokenizers`` Unigram model with the ``Metaspace`` pre-tokenizer, as XLM-R's ``tokenizer.json``
is: a piece that starts a word carries the marker ``▁``, so ``bewakoof`` becomes ``▁bewa`` + ``koof`` and
``filmy`` becomes ``▁film`` + ``y``. The model is ``transformers``' ``XLMRobertaForSequenceClassification`` with
random weights (hidden 16, 2 heads, ``layers`` encoder blocks), exported with the TorchScript exporter; its nodes
are scoped ``/roberta/encoder/layer.K/...`` as real exports are.
"""
from __future__ import annotations

import io
import warnings

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
PIECES = ["▁", "▁the", "▁film", "▁was", "▁a", "▁bewa", "koof", "▁not", "▁great", "▁good", "▁bad", "▁plot", "y",
          "▁is", "▁very", "!", ".", ",", "▁i", "▁liked", "s", "▁act", "ing", "▁dull"]
LABELS = ["negative", "neutral", "positive"]
VOCAB = len(SPECIALS) + len(PIECES)


def make_tokenizer(path) -> str:
    """A Unigram (sentencepiece) ``tokenizer.json`` at ``path``, with ``<s> $A </s>`` around each text."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram
    vocab = [(tok, 0.0) for tok in SPECIALS] + [(p, -1.0 - 0.01 * i) for i, p in enumerate(PIECES)]
    tok = Tokenizer(Unigram(vocab, unk_id=3))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tok.add_special_tokens(SPECIALS)
    tok.save(str(path))
    return str(path)


def make_model(layers: int = 2, seed: int = 0, seq: int = 8, biases: bool = True):
    """``(torch model, ONNX bytes)``: an XLM-R sequence classifier with ``layers`` blocks and 3 classes; inputs
    ``input_ids`` and ``attention_mask`` (dynamic batch and length), output ``logits``. ``biases=False`` zeroes
    every Linear bias and LayerNorm shift (so LRP-0 conserves through the classification head)."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification
    torch.manual_seed(seed)
    config = XLMRobertaConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                              intermediate_size=32, max_position_embeddings=40, num_labels=len(LABELS),
                              pad_token_id=1, bos_token_id=0, eos_token_id=2, hidden_dropout_prob=0.0,
                              attention_probs_dropout_prob=0.0, initializer_range=0.3,
                              attn_implementation="eager")
    model = XLMRobertaForSequenceClassification(config).eval()
    if not biases:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.endswith(".bias"):
                    param.zero_()

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits

    wrapped = Logits(model).eval()
    return wrapped, export_model(wrapped, seq)



def export_model(wrapped, seq: int = 8) -> bytes:
    """ONNX bytes of a model from :func:`make_model` (after its weights were changed)."""
    import torch
    args = (torch.ones(2, seq, dtype=torch.long) * 5, torch.ones(2, seq, dtype=torch.long))
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapped, args, buf, dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_axes={**axes, "logits": {0: "batch"}})
    return buf.getvalue()
