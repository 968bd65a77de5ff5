"""Seed 001's workflow (issue 14): LRP-0, ε and γ on a tiny XLM-R classifier, word-level, three rules on one page.

The model is ``transformers``' XLM-R sequence classifier with random weights, exported here (tests/text/
xlmr_fixture.py), with a sentencepiece-style (Unigram + Metaspace) ``tokenizer.json`` that splits ``bewakoof`` into
``▁bewa`` + ``koof``. Checked:

* a word's relevance is exactly the sum of its pieces' (``math.fsum``), in the API, the JSON and the HTML;
* LRP-0 and γ conserve the logit through the classification head when the model has no biases: the relevance after
  the last block sums to the logit (ε drops its stabilised share and is only bounded by it);
* the per-layer view's rows equal torch autograd's gradient of the logit w.r.t. ``hidden_states`` (method
  ``gradient``), so the block boundaries found from the graph are the tensors between the blocks;
* ``inspect`` on the text model (no ``--input-name``) reports the lookup, and every method it lists runs on ids;
* a model saved with external data loads by path for ``explain`` and ``explain-text``.
"""
from __future__ import annotations

import html as htmlmod
import json
import math
import re

import numpy as np
import pytest

pytest.importorskip("tokenizers")
pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

import onnxlrp  # noqa: E402
from onnxlrp import text as otext  # noqa: E402
from onnxlrp.cli import main as cli_main  # noqa: E402
from tests.helpers.compare import assert_rel, within  # noqa: E402
from tests.text.xlmr_fixture import LABELS, make_model, make_tokenizer  # noqa: E402

TEXTS = ["the film was bewakoof, not great!", "a dull plot"]
SEED_METHODS = ["lrp0", "epsilon", "gamma"]  # LRP-0, LRP-ε, LRP-γ


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("xlmr-tok") / "tokenizer.json")


@pytest.fixture(scope="module")
def xlmr(tmp_path_factory):
    wrapped, data = make_model()
    path = tmp_path_factory.mktemp("xlmr") / "xlmr.onnx"
    path.write_bytes(data)
    return wrapped, str(path)


@pytest.fixture(scope="module")
def xlmr_nobias(tmp_path_factory):
    _, data = make_model(seed=1, biases=False)
    path = tmp_path_factory.mktemp("xlmr-nobias") / "xlmr.onnx"
    path.write_bytes(data)
    return str(path)


def test_words_are_the_exact_sum_of_their_pieces(xlmr, tok):
    _, path = xlmr
    tx = otext.TextExplainer(path, tok, dtype="float64")
    res = tx.explain(TEXTS, method="epsilon")
    assert res.tokens[0] == ["<s>", "▁the", "▁film", "▁was", "▁bewa", "koof", ",", "▁not", "▁great", "!", "</s>"]
    assert res.words[0] == ["<s>", "the", "film", "was", "bewakoof,", "not", "great!", "</s>"]
    assert res.word_groups[0][4] == [4, 5, 6] and res.word_groups[0][6] == [8, 9]
    for i in range(len(TEXTS)):
        assert sorted(k for g in res.word_groups[i] for k in g) == list(range(len(res.tokens[i])))
        for group, value in zip(res.word_groups[i], res.word_relevance[i]):
            assert value == math.fsum(res.relevance[i][group])            # exact, not within a tolerance
        total_words, total_pieces = math.fsum(res.word_relevance[i]), math.fsum(res.relevance[i])
        assert within(abs(total_words - total_pieces) / abs(total_pieces), 1e-15, "word total vs piece total")


def test_word_groups_from_markers_without_word_ids():
    tokens = ["<s>", "▁bewa", "koof", ",", "▁not", "</s>", "[CLS]", "film", "##s", "!"]
    special = [True, False, False, False, False, True, True, False, False, False]
    offsets = [(0, 0), (0, 4), (4, 8), (8, 9), (9, 13), (0, 0), (0, 0), (0, 4), (4, 5), (6, 7)]
    groups = otext.word_groups(tokens, special, offsets)
    assert groups == [[0], [1, 2, 3], [4], [5], [6], [7, 8], [9]]


def test_seed_001_three_rules_on_one_word_level_page(xlmr_nobias, tok, tmp_path, capsys):
    """LRP-0, ε and γ by one command: one HTML page with a row per rule at word level, JSON with one entry per rule;
    conservation after the last block for the rules that conserve (no biases in the model)."""
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    page = tmp_path / "seed001.html"
    args = ["explain-text", xlmr_nobias, "--tokenizer", tok, *TEXTS, "--labels", str(labels), "--dtype", "float64",
            "--method", ",".join(SEED_METHODS), "--per-layer", "--html", str(page), "--json",
            "--set", "gamma.stabilizer=1e-15"]  # γ's default stabiliser (1e-6) absorbs 3e-6 of the logit here
    rc = cli_main(args)
    out, err = capsys.readouterr()
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["view"] == "words" and [m["method"] for m in doc["methods"]] == SEED_METHODS
    for entry in doc["methods"]:
        for item in entry["texts"]:
            pieces = [t["relevance"] for t in item["tokens"]]
            for word in item["words"]:                                    # exact through JSON too
                assert word["relevance"] == math.fsum(pieces[k] for k in word["pieces"])
            layers = item["layers"]
            assert layers["rows"] == ["embedding", "block 0", "block 1"]
            table = np.array(layers["relevance"])
            assert table.shape == (3, len(item["words"]))
            assert_rel(table[0], [w["relevance"] for w in item["words"]], 1e-15)   # row 0 is the word relevance
            last = math.fsum(table[-1])
            if entry["method"] in ("lrp0", "gamma"):                     # conserving rules: the logit, exactly
                assert within(abs(last - item["logit"]) / abs(item["logit"]), 3e-14, f"{entry['method']} conserves")
            else:                                                         # ε absorbs part of it, never adds
                assert abs(last) <= abs(item["logit"]) * (1 + 1e-12)
    html = page.read_text()
    rows = re.findall(r'<div class="row" data-method="([^"]+)"><span class="method">', html)
    assert rows == SEED_METHODS * len(TEXTS)                              # one row per rule, per text
    spans = re.findall(r'<span class="tok[^"]*" style="background:#[0-9a-f]{6}" title="([^"]*)">([^<]*)</span>', html)
    shown = [htmlmod.unescape(s[1]) for s in spans]
    assert shown.count("bewakoof,") == len(SEED_METHODS) and "koof" not in shown        # whole words coloured
    title = next(htmlmod.unescape(t) for t, s in spans if htmlmod.unescape(s) == "bewakoof,")
    assert "▁bewa" in title and "koof" in title
    assert html.count('<table class="layers"') == len(SEED_METHODS) * len(TEXTS)


def test_piece_view_is_kept(xlmr, tok, tmp_path, capsys):
    _, path = xlmr
    page = tmp_path / "pieces.html"
    rc = cli_main(["explain-text", path, "--tokenizer", tok, TEXTS[0], "-m", "epsilon", "--view", "pieces",
                   "--html", str(page), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["view"] == "pieces" and "words" not in doc["texts"][0]
    shown = re.findall(r'<span class="tok[^"]*" style="[^"]*" title="[^"]*">([^<]*)</span>', page.read_text())
    assert len(shown) == len(doc["texts"][0]["tokens"]) and "koof" in shown
    rc = cli_main(["explain-text", path, "--tokenizer", tok, TEXTS[0], "-m", "epsilon", "--view", "letters"])
    assert rc == 2


def test_per_layer_rows_equal_autograd_hidden_state_gradients(xlmr, tok):
    """Method ``gradient``: row ``block k`` is dz_t/dh_(k+1) summed over the hidden axis, h = hidden_states."""
    wrapped, path = xlmr
    tx = otext.TextExplainer(path, tok, dtype="float64")
    res = tx.explain(TEXTS, method="gradient", target=[2, 0], per_layer=True)
    assert res.layers == ["embedding", "block 0", "block 1"]
    model = wrapped.inner.double()
    try:
        captured = {}
        hook = model.roberta.embeddings.word_embeddings.register_forward_hook(
            lambda m, i, o: captured.setdefault("emb", o))
        for i, text in enumerate(TEXTS):
            ids = torch.tensor([otext.load_tokenizer(tok).encode(text).ids])
            captured.clear()
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
            z = out.logits[0, int(res.target[i])]
            tensors = [captured["emb"], *out.hidden_states[1:]]
            grads = torch.autograd.grad(z, tensors)
            want = np.stack([g[0].sum(-1).detach().numpy() for g in grads])
            assert_rel(res.layer_relevance[i], want, 1e-6)   # floor: the exporter's float32 constant folding
            assert_rel(float(res.output[i, res.target[i]]), float(z.detach()), 1e-6)
        hook.remove()
    finally:
        model.float()


def test_residual_stream_fallback_without_scopes(xlmr):
    import onnx
    _, path = xlmr
    model = onnx.load(path)
    emb = otext.find_embedding(model, "input_ids")
    scoped = otext.block_outputs(model, emb)
    assert [t for _, t in scoped] == [f"/inner/roberta/encoder/layer.{k}/output/LayerNorm/LayerNormalization_output_0"
                                      for k in range(2)]
    for n, node in enumerate(model.graph.node):
        node.name = f"node{n}"
    plain = otext.block_outputs(model, emb)
    assert [t for _, t in plain] == [f"/inner/roberta/encoder/layer.{k}/{part}/Add_output_0"
                                     for k in range(2) for part in ("attention/output", "output")]


def test_inspect_understands_a_text_model(xlmr, tok, capsys):
    _, path = xlmr
    rc = cli_main(["inspect", path, "--json"])                            # no --input-name: the ids are found
    out, err = capsys.readouterr()
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["explained_input"] == "input_ids"
    assert doc["text"]["lookup"] == otext.TextExplainer(path, tok).embedding
    assert doc["text"]["other_inputs"] == {"mask": "attention_mask"} and len(doc["text"]["blocks"]) == 2
    usable = doc["coverage"]["methods"]
    assert "grad_cam" not in usable and "grad_cam" in doc["coverage"]["not_applicable"]
    assert [i[0] for i in doc["info"]["inputs"]] == ["input_ids", "attention_mask"]
    ex = onnxlrp.Explainer(path, input_name="input_ids")
    ids = np.array([[0, 9, 10, 2]])
    for name in usable:                                                   # every listed method runs on ids
        if onnxlrp.methods()[name]["kind"] == "pattern":                 # these need patterns fitted on data
            continue
        extra = {"contrast": 0} if "contrast" in onnxlrp.methods().get(name, {}).get("params", {}) else {}
        if "steps" in onnxlrp.methods().get(name, {}).get("params", {}):
            extra["steps"] = 4
        r = ex.explain(ids, method=name, target=1, feeds={"attention_mask": np.ones_like(ids)}, **extra)
        assert r.relevance.shape == ids.shape and np.isfinite(r.relevance).all(), name
    rc = cli_main(["inspect", path, "--input-name", "input_ids"])
    out = capsys.readouterr().out
    assert rc == 0 and "embedding lookup" in out and "attention_mask (mask)" in out


def test_inspect_drops_the_box_rule_when_it_would_bound_embeddings(tmp_path, capsys):
    """A convolution reads the embedding directly: epsilon_gamma_box would put ZBox (a pixel range) on it."""
    from tests.text.test_text import TextCNN, export
    torch.manual_seed(0)
    path = tmp_path / "cnn.onnx"
    path.write_bytes(export(TextCNN(), ["input_ids", "attention_mask"]))
    assert cli_main(["inspect", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "epsilon_gamma_box" not in doc["coverage"]["methods"] and "epsilon" in doc["coverage"]["methods"]
    assert "pixel range" in doc["coverage"]["not_applicable"]["epsilon_gamma_box"]


def test_external_data_loads_for_explain_and_explain_text(xlmr, tok, tmp_path, monkeypatch, capsys):
    import onnx
    _, path = xlmr
    folder = tmp_path / "big"
    folder.mkdir()
    external = folder / "model.onnx"
    onnx.save_model(onnx.load(path), str(external), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=0)
    stored = onnx.load(str(external), load_external_data=False)
    assert all(t.data_location == onnx.TensorProto.EXTERNAL for t in stored.graph.initializer)   # every weight
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)                                          # resolved from the model's folder
    want = otext.TextExplainer(path, tok, dtype="float64").explain(TEXTS, method="lrp0")
    got = otext.TextExplainer(str(external), tok, dtype="float64").explain(TEXTS, method="lrp0")
    for a, b in zip(got.relevance, want.relevance):
        assert_rel(a, b, 5e-15)
    rc = cli_main(["explain-text", str(external), "--tokenizer", tok, TEXTS[0], "-m", "lrp0", "--json",
                   "--dtype", "float64"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert_rel([w["relevance"] for w in doc["texts"][0]["words"]], want.word_relevance[0], 5e-15)
    ids = np.array([otext.load_tokenizer(tok).encode(TEXTS[0]).ids])
    np.save(elsewhere / "ids.npy", ids)
    np.save(elsewhere / "mask.npy", np.ones_like(ids))
    rc = cli_main(["explain", str(external), "ids.npy", "--input-name", "input_ids", "--feed",
                   "attention_mask=mask.npy", "-m", "lrp0", "--dtype", "float64", "-o", "out", "-q"])
    assert rc == 0, capsys.readouterr().err
    assert_rel(np.load(elsewhere / "out" / "ids_0.lrp0.npy").reshape(-1), want.relevance[0], 5e-15)
