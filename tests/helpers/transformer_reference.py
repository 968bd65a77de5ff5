"""Reference numbers for tests/peers/test_transformers.py, computed in a separate process.

Builds a tiny random BERT (transformers) and a tiny torchvision ViT with fixed seeds, exports them to ONNX
(TorchScript exporter, opset 17; dynamo exporter for BERT), and computes in float64 on the same weights:

* torch autograd gradients of the target logit w.r.t. the explained input;
* LXT 2.1 (efficient, Gradient×Input) AttnLRP relevance for BERT and CP-LRP relevance for the ViT (LXT's only ViT
  patch map), seeded with gradient 1 on the target logit (= relevance ``z_c`` at the logit);
* AttnLRP for the ViT from LXT's own rules (its LayerNorm and GELU patches, and its transformers attention rule
  applied to ``nn.MultiheadAttention``; see the comment in ``main``).

It runs in its own process because LXT monkey-patches transformers' ``modeling_bert`` and the torch classes
``nn.LayerNorm``/``nn.GELU``/``nn.MultiheadAttention`` process-wide (gradients of every later torch model would
change). Usage: ``python transformer_reference.py OUT_DIR [--no-dynamo]``; writes ``*.onnx`` and ``reference.npz``.
"""
from __future__ import annotations

import os
import sys
import warnings

import numpy as np
import torch

BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100,
            max_position_embeddings=32, num_labels=3)
VIT = dict(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=5)


class _Logits(torch.nn.Module):
    """``inputs_embeds -> logits`` (the explained input is the word-embedding output, one row per token)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, embeds):
        return self.model(inputs_embeds=embeds).logits


def _randomize(module, seed):
    """Non-trivial LayerNorm/RMSNorm weights and biases (default init is 1/0), so the norm rule's affine terms
    matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.LayerNorm) or type(m).__name__.endswith("RMSNorm"):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                if getattr(m, "bias", None) is not None:
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))


def _grad(model, x, target):
    x = x.clone().requires_grad_(True)
    out = model(x)
    out[torch.arange(len(target)), target].sum().backward()
    return out.detach().numpy(), x.grad.numpy()


def main(out_dir: str, dynamo: bool = True) -> None:
    warnings.filterwarnings("ignore")
    import transformers.models.bert.modeling_bert as modeling_bert
    from transformers import BertConfig

    torch.manual_seed(0)
    config = BertConfig(**BERT, attn_implementation="eager")
    bert = modeling_bert.BertForSequenceClassification(config).eval()
    _randomize(bert, 1)
    state = {k: v.clone() for k, v in bert.state_dict().items()}
    embeds = torch.randn(2, 8, BERT["hidden_size"], generator=torch.Generator().manual_seed(2))
    wrapped = _Logits(bert).eval()
    torch.onnx.export(wrapped, (embeds,), os.path.join(out_dir, "bert.onnx"), opset_version=17, dynamo=False,
                      input_names=["embeds"], output_names=["logits"], dynamic_axes={"embeds": {0: "N", 1: "T"}})
    if dynamo:
        try:
            torch.onnx.export(wrapped, (embeds,), os.path.join(out_dir, "bert_dynamo.onnx"), dynamo=True,
                              input_names=["embeds"], output_names=["logits"], verbose=False)
        except Exception as exc:  # the test reports it as a skip
            with open(os.path.join(out_dir, "bert_dynamo.error"), "w") as f:
                f.write(f"{type(exc).__name__}: {exc}")
    ref = {"bert_embeds": embeds.numpy()}
    wrapped64 = _Logits(bert.double()).eval()
    logits, _ = _grad(wrapped64, embeds.double(), torch.tensor([0, 0]))
    target = torch.as_tensor(logits.argmax(1))
    ref["bert_logits"], ref["bert_grad"] = _grad(wrapped64, embeds.double(), target)
    ref["bert_target"] = target.numpy()

    from torchvision.models import vision_transformer
    torch.manual_seed(3)
    vit = vision_transformer.VisionTransformer(**VIT).eval()
    with torch.no_grad():  # the class token and head are zero-initialised by torchvision
        vit.class_token.normal_(0, 0.5)
        vit.heads.head.weight.normal_(0, 0.3)
        vit.heads.head.bias.normal_(0, 0.1)
    _randomize(vit, 4)
    image = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    torch.onnx.export(vit, (image,), os.path.join(out_dir, "vit.onnx"), opset_version=17, dynamo=False,
                      input_names=["image"], output_names=["logits"], dynamic_axes={"image": {0: "N"}})
    vit64 = vit.double()
    logits, _ = _grad(vit64, image.double(), torch.tensor([0, 0]))
    vit_target = torch.as_tensor(logits.argmax(1))
    ref["vit_image"], ref["vit_target"] = image.numpy(), vit_target.numpy()
    ref["vit_logits"], ref["vit_grad"] = _grad(vit64, image.double(), vit_target)

    # ---- LXT (patches process-wide from here on)
    from lxt.efficient import monkey_patch
    monkey_patch(modeling_bert)
    lxt_bert = modeling_bert.BertForSequenceClassification(config).eval()
    lxt_bert.load_state_dict(state)
    lxt_bert = _Logits(lxt_bert.double()).eval()
    out, grad = _grad(lxt_bert, embeds.double(), target)
    np.testing.assert_allclose(out, ref["bert_logits"], rtol=1e-10, atol=1e-12)  # patched forward is unchanged
    ref["bert_attnlrp"] = embeds.double().numpy() * grad

    monkey_patch(vision_transformer)
    out, grad = _grad(vit64, image.double(), vit_target)
    np.testing.assert_allclose(out, ref["vit_logits"], rtol=1e-10, atol=1e-12)
    ref["vit_cp_lrp"] = image.double().numpy() * grad

    # AttnLRP for the ViT. LXT ships only a CP-LRP map for torchvision's ViT; its AttnLRP attention rule for the
    # transformers models (``wrap_attention_forward``: the uniform rule on QKᵀ and A·V, i.e. the gradients of q and
    # k divided by 4 and of v by 2) is applied here to nn.MultiheadAttention's inputs. Its q/k/v projections are
    # affine, so dividing a gradient before or after them is the same. GELU and LayerNorm keep LXT's patches above.
    from lxt.efficient.rules import divide_gradient

    def attnlrp_multi_head_attention_forward(self, query, key, value, *args, **kwargs):
        return self.original_forward(divide_gradient(query, 4), divide_gradient(key, 4), divide_gradient(value, 2),
                                     *args, **kwargs)

    vision_transformer.nn.MultiheadAttention.forward = attnlrp_multi_head_attention_forward
    out, grad = _grad(vit64, image.double(), vit_target)
    np.testing.assert_allclose(out, ref["vit_logits"], rtol=1e-10, atol=1e-12)
    ref["vit_attnlrp"] = image.double().numpy() * grad
    np.savez(os.path.join(out_dir, "reference.npz"), **ref)


if __name__ == "__main__":
    main(sys.argv[1], dynamo="--no-dynamo" not in sys.argv[2:])
