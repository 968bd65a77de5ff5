"""Text explanations (issue 5, item 3): ``onnxlrp.text`` and ``onnxlrp explain-text``.

The models are tiny PyTorch text classifiers with random weights, exported to ONNX, with a WordPiece
``tokenizer.json`` built here with the ``tokenizers`` library (no network):

* a convolutional classifier (embedding -> mask -> Conv1d -> ReLU -> mean over tokens -> Linear), whose kernels
  exist today: per-token relevance is checked against torch autograd on the embedding output, LRP-0 conservation
  on a bias-free copy, and the HTML view;
* a one-layer BERT (embeddings + LayerNorm, self-attention with a padding mask, GELU feed-forward, [CLS] head):
  per-token input x gradient equals autograd's (the LayerNorm, bilinear MatMul and Erf kernels of issue 5).
"""
from __future__ import annotations

import html as htmlmod
import io
import json
import re
import warnings

import numpy as np
import pytest

pytest.importorskip("tokenizers")
import torch  # noqa: E402
from torch import nn  # noqa: E402

import onnxlrp  # noqa: E402
from onnxlrp import text as otext  # noqa: E402
from onnxlrp.cli import main as cli_main  # noqa: E402
from tests.helpers.compare import assert_close, assert_rel, within

WORDS = ["the", "a", "film", "movie", "was", "is", "great", "good", "fine", "bad", "dull", "awful", "plot", "acting",
         "not", "very", "and", "but", "i", "liked", "hated", "it", "##s", "##ly", "##ed", "love", "boring", "fun",
         ".", ",", "!"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
LABELS = ["negative", "neutral", "positive"]


def make_tokenizer(path) -> str:
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tok.save(str(path))
    return str(path)


VOCAB = len(SPECIALS) + len(WORDS)


class TextCNN(nn.Module):
    def __init__(self, dim: int = 16, classes: int = 3, bias: bool = True):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, dim)
        self.conv = nn.Conv1d(dim, 24, 3, padding=1, bias=bias)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(24, classes, bias=bias)

    def embed(self, input_ids):
        return self.embedding(input_ids)

    def head(self, emb, attention_mask):
        e = emb * attention_mask.unsqueeze(-1).to(emb.dtype)
        h = self.relu(self.conv(e.transpose(1, 2)))
        return self.fc(h.mean(dim=2))

    def forward(self, input_ids, attention_mask):
        return self.head(self.embed(input_ids), attention_mask)


class TinyBert(nn.Module):
    """One encoder layer, hidden 16, 2 heads, GELU feed-forward, LayerNorms, [CLS] pooler + classifier."""

    def __init__(self, dim: int = 16, heads: int = 2, classes: int = 3, max_len: int = 32):
        super().__init__()
        self.word = nn.Embedding(VOCAB, dim)
        self.pos = nn.Embedding(max_len, dim)
        self.typ = nn.Embedding(2, dim)
        self.ln0 = nn.LayerNorm(dim)
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.ln1 = nn.LayerNorm(dim)
        self.ff1, self.ff2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.pool = nn.Linear(dim, dim)
        self.cls = nn.Linear(dim, classes)
        self.heads = heads

    def embed(self, input_ids):
        return self.word(input_ids)

    def head(self, emb, attention_mask, token_type_ids):
        b, t, d = emb.shape
        pos = torch.arange(t).unsqueeze(0)
        x = self.ln0(emb + self.pos(pos) + self.typ(token_type_ids))
        h = self.heads
        q = self.q(x).view(b, t, h, d // h).transpose(1, 2)
        k = self.k(x).view(b, t, h, d // h).transpose(1, 2)
        v = self.v(x).view(b, t, h, d // h).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / (d // h) ** 0.5
        scores = scores + (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        a = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = self.ln1(x + self.o(a))
        x = self.ln2(x + self.ff2(nn.functional.gelu(self.ff1(x))))
        return self.cls(torch.tanh(self.pool(x[:, 0])))

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.head(self.embed(input_ids), attention_mask, token_type_ids)


def export(model: nn.Module, names: list[str], seq: int = 8) -> bytes:
    model = model.eval()
    args = tuple(torch.ones(2, seq, dtype=torch.long) for _ in names)
    axes = {n: {0: "batch", 1: "tokens"} for n in names}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, buf, dynamo=False, opset_version=17, input_names=names,
                          output_names=["logits"], dynamic_axes={**axes, "logits": {0: "batch"}})
    return buf.getvalue()


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json")


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    torch.manual_seed(0)
    model = TextCNN()
    path = tmp_path_factory.mktemp("cnn") / "text_cnn.onnx"
    path.write_bytes(export(model, ["input_ids", "attention_mask"]))
    return model, str(path)


def torch_token_relevance(model, tokenizer_path, texts, target, kind="input_x_gradient"):
    """Per-token input x gradient on the embedding output, by autograd in float64."""
    tok = otext.load_tokenizer(tokenizer_path)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    enc = tok.encode_batch(texts)
    ids = torch.tensor([e.ids for e in enc])
    mask = torch.tensor([e.attention_mask for e in enc])
    m64 = TextCNN()
    m64.load_state_dict(model.state_dict())
    m64 = m64.double().eval()
    emb = m64.embed(ids).detach().requires_grad_(True)
    logits = m64.head(emb, mask)
    picked = logits[torch.arange(len(texts)), torch.as_tensor(target)].sum()
    (grad,) = torch.autograd.grad(picked, emb)
    per_token = (grad * emb).sum(-1).detach().numpy()
    return logits.detach().numpy(), [per_token[i, mask[i].bool().numpy()] for i in range(len(texts))]


TEXTS = ["The film was great!", "I hated the boring plot, but the acting was fine"]


def test_per_token_relevance_equals_autograd(cnn, tokenizer_path):
    model, path = cnn
    tx = otext.TextExplainer(path, tokenizer_path, dtype="float64", labels=LABELS)
    assert tx.roles == {"ids": "input_ids", "mask": "attention_mask"}
    res = tx.explain(TEXTS, method="input_x_gradient", target=[2, 0])
    assert res.tokens[0] == ["[CLS]", "the", "film", "was", "great", "!", "[SEP]"]
    assert res.special[0][0] and res.special[0][-1] and not any(res.special[0][1:-1])
    assert len(res.tokens[1]) > len(res.tokens[0])                       # padding removed per text
    logits, expected = torch_token_relevance(model, tokenizer_path, TEXTS, [2, 0])
    assert_close(res.output, logits, rtol=2e-15, atol=2e-18)
    for got, want in zip(res.relevance, expected):
        assert_rel(got, want, 9e-15)
    assert res.embedding_relevance.shape[:2] == (2, len(res.tokens[1])) and res.embedding_relevance.shape[2] == 16
    assert np.all(res.embedding_relevance[0, len(res.tokens[0]):] == 0)  # padded positions are masked out


def test_lrp0_per_token_relevance_conserves_without_biases(tmp_path, tokenizer_path):
    torch.manual_seed(1)
    path = tmp_path / "nobias.onnx"
    path.write_bytes(export(TextCNN(bias=False), ["input_ids", "attention_mask"]))
    res = otext.explain_text(str(path), tokenizer_path, TEXTS, method="lrp0", dtype="float64")
    for i in range(2):
        logit = res.output[i, res.target[i]]
        assert within(abs(res.relevance[i].sum() - logit) / abs(logit), 2e-15, "conservation")


def test_html_view_colours_tokens_by_signed_relevance(cnn, tokenizer_path):
    _, path = cnn
    res = otext.explain_text(path, tokenizer_path, TEXTS, method="epsilon", labels=LABELS)
    page = res.html()
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    spans = re.findall(r'<span class="(tok[^"]*)" style="background:(#[0-9a-f]{6})" title="([^"]*)">([^<]*)</span>',
                       page)
    assert len(spans) == sum(len(t) for t in res.tokens)
    assert [htmlmod.unescape(s[3]) for s in spans[:len(res.tokens[0])]] == [
        "[CLS]", "The", "film", "was", "great", "!", "[SEP]"]          # original casing from the offsets
    r = np.concatenate(res.relevance)
    for (_, colour, _, _), value in zip(spans, r):
        red, blue = int(colour[1:3], 16), int(colour[5:7], 16)
        if value > 0:
            assert red >= blue
        elif value < 0:
            assert blue >= red
    top = int(np.argmax(np.abs(res.relevance[0])))
    assert spans[top][1] in ("#b40426", "#3b4cc0")                     # the largest |R| gets the full colour
    assert "negative" in page and "positive" in page and LABELS[int(res.target[0])] in page
    assert otext.token_colour(0.0, 1.0) == "#ffffff"


def test_cli_explain_text(cnn, tokenizer_path, tmp_path, capsys):
    _, path = cnn
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    out_html = tmp_path / "tokens.html"
    rc = cli_main(["explain-text", path, "--tokenizer", tokenizer_path, *TEXTS, "--labels", str(labels),
                   "--method", "epsilon", "--html", str(out_html), "--target", "positive"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "film" in out and "positive" in out and out_html.is_file()
    assert out_html.read_text().count('class="tok') >= 7
    rc = cli_main(["explain-text", path, "--tokenizer", tokenizer_path, TEXTS[0], "--json", "-m", "gradient",
                   "--dtype", "float64"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["method"] == "gradient" and doc["texts"][0]["tokens"][2]["token"] == "film"
    api = otext.explain_text(path, tokenizer_path, TEXTS[0], method="gradient", dtype="float64")
    assert_close([t["relevance"] for t in doc["texts"][0]["tokens"]], api.relevance[0], rtol=1e-12)


def test_cli_explain_text_errors(cnn, tokenizer_path, tmp_path, capsys):
    _, path = cnn
    rc = cli_main(["explain-text", path, "--tokenizer", str(tmp_path / "missing.json"), "hi"])
    assert rc == 18 and "tokenizer file" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    rc = cli_main(["explain-text", path, "--tokenizer", str(bad), "hi"])
    assert rc == 18 and "cannot read tokenizer" in capsys.readouterr().err
    rc = cli_main(["explain-text", path, "--tokenizer", tokenizer_path, "hi", "--embedding", "nope"])
    assert rc == 6 and "nope" in capsys.readouterr().err
    rc = cli_main(["explain-text", path, "--tokenizer", tokenizer_path, "hi", "--target", "7"])
    assert rc == 8


def test_missing_tokenizers_package_is_a_clear_error(monkeypatch, cnn, tokenizer_path):
    import builtins
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "tokenizers" or name.startswith("tokenizers."):
            raise ImportError("no tokenizers")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(otext.MissingDependencyError, match=r"pip install 'onnxlrp\[text\]'"):
        otext.load_tokenizer(tokenizer_path)


def test_embedding_is_found_and_the_model_is_cut_there(cnn):
    import onnx
    _, path = cnn
    model = onnx.load(path)
    emb = otext.find_embedding(model, "input_ids")
    gather = next(n for n in model.graph.node if emb in n.output)
    assert gather.op_type == "Gather"
    cut = otext.cut_at(model, emb, ["batch", "tokens", 16])
    assert emb in [i.name for i in cut.graph.input] and not any(emb in n.output for n in cut.graph.node)
    assert len(cut.graph.node) == len(model.graph.node) - 1
    assert "Gather" not in onnxlrp.Explainer(cut.SerializeToString(), input_name=emb,
                                             output_name="logits").path_nodes().__repr__()
    # the embedding lookup alone (not the whole model) computes the explained input
    probe = otext.upstream_model(model, emb, onnx.TensorProto.FLOAT)
    assert [n.op_type for n in probe.graph.node] == ["Gather"] and [i.name for i in probe.graph.input] == ["input_ids"]
    assert [t.name for t in probe.graph.initializer] == [gather.input[0]]
    ids = np.array([[1, 5, 2]], dtype=np.int64)
    import onnxruntime as ort
    (got,) = ort.InferenceSession(probe.SerializeToString()).run(None, {"input_ids": ids})
    table = next(onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.name == gather.input[0])
    np.testing.assert_array_equal(got, table[ids])


def test_tiny_bert_per_token_relevance(tmp_path, tokenizer_path):
    """A one-layer BERT: gradient x input per token equals autograd's; explained with the default text method."""
    torch.manual_seed(2)
    model = TinyBert().eval()
    path = tmp_path / "bert.onnx"
    path.write_bytes(export(model, ["input_ids", "attention_mask", "token_type_ids"]))
    tx = otext.TextExplainer(str(path), tokenizer_path, dtype="float64")
    assert tx.roles == {"ids": "input_ids", "mask": "attention_mask", "type": "token_type_ids"}
    res = tx.explain(TEXTS, method="input_x_gradient", target=[1, 1])
    tok = otext.load_tokenizer(tokenizer_path)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    enc = tok.encode_batch(TEXTS)
    ids = torch.tensor([e.ids for e in enc])
    mask = torch.tensor([e.attention_mask for e in enc])
    m64 = TinyBert()
    m64.load_state_dict(model.state_dict())
    m64 = m64.double().eval()
    emb = m64.embed(ids).detach().requires_grad_(True)
    logits = m64.head(emb, mask, torch.zeros_like(ids))
    (grad,) = torch.autograd.grad(logits[:, 1].sum(), emb)
    per_token = (grad * emb).sum(-1).detach().numpy()
    for i in range(2):
        want = per_token[i, mask[i].bool().numpy()]
        assert_rel(res.relevance[i], want, 2e-8)
    default = tx.explain(TEXTS)
    assert default.method == "attnlrp" and np.isfinite(default.relevance[0]).all()
    assert_close(default.embedding_relevance, tx.explain(TEXTS, method="attnlrp").embedding_relevance)
