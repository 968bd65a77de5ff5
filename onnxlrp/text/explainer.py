"""Text explanations: per-token relevance for a text classifier exported to ONNX, with its ``tokenizer.json``.

>>> import onnxlrp.text
>>> tx = onnxlrp.text.TextExplainer("classifier.onnx", "tokenizer.json")
>>> res = tx.explain(["a fine film", "a dull film"], method="epsilon")
>>> res.tokens[0], res.relevance[0]          # tokens (special ones included) and one relevance per token
>>> open("tokens.html", "w").write(res.html())

How it works. Token ids are integers, so relevance cannot land on them; it lands on the *token embedding*, the
output of the ``Gather`` that looks the ids up in the embedding table. The model is cut there: the ``Gather`` node is
removed and its output becomes a float input of the model, the explained input; the other model inputs (ids, the
attention mask, token types) are fed unchanged and carry no relevance, so position embeddings, attention masks and
everything else computed from them are constants of the explanation. The relevance of a token is the sum of the
relevance of its embedding vector over the embedding axis.

The tokenizer is read with the ``tokenizers`` library (no network), an optional dependency:
``pip install 'onnxlrp[text]'``. Model inputs are recognised by name as Hugging Face exports them: ``input_ids``
(or the only integer input), ``attention_mask``, ``token_type_ids`` and ``position_ids``.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..engine.lookup import INT_TYPES, cut_at, find_embedding, table_type, upstream_model
from ..errors import EmbeddingNotFoundError, MissingDependencyError, NameSelectionError, TokenizerError, UsageError
from ..views.tokens import render_html, softmax
from .layers import block_outputs
from .words import sum_per_word, word_groups, word_texts

DEFAULT_METHOD = "attnlrp"  # the transformer rules (LXT); see onnxlrp.attnlrp
VIEWS = ("words", "pieces")

def _tokenizers():
    try:
        import tokenizers
    except ImportError as exc:
        raise MissingDependencyError("text explanations need the 'tokenizers' package: pip install 'onnxlrp[text]' "
                                     "(or pip install tokenizers)") from exc
    return tokenizers


def load_tokenizer(tokenizer):
    """A ``tokenizers.Tokenizer`` from a path to ``tokenizer.json`` (or one already loaded)."""
    tokenizers = _tokenizers()
    if isinstance(tokenizer, tokenizers.Tokenizer):
        return tokenizer
    path = os.fspath(tokenizer)
    if not os.path.isfile(path):
        raise TokenizerError(f"tokenizer file {path!r} does not exist" if not os.path.exists(path)
                             else f"tokenizer {path!r} is not a file (give the path of tokenizer.json)")
    try:
        return tokenizers.Tokenizer.from_file(path)
    except Exception as exc:  # noqa: BLE001 - tokenizers raises plain Exceptions
        raise TokenizerError(f"cannot read tokenizer {path!r}: {str(exc).splitlines()[0] if str(exc) else exc} "
                             "(expected a Hugging Face tokenizers JSON file, tokenizer.json)") from exc


# ---------------------------------------------------------------------------------------------------- results
@dataclass
class TextExplanation:
    """Result of :meth:`TextExplainer.explain`; lists have one entry per text.

    ``tokens[i]``/``relevance[i]``/``special[i]`` cover the text's tokens without padding (special tokens such as
    ``[CLS]`` included and flagged); ``relevance[i][k]`` is the summed relevance of token ``k``'s embedding.
    ``embedding_relevance`` is the full ``(batch, tokens, embedding)`` array, padding included; ``intermediate``
    the relevance of the tensors named with ``keep=`` (as in :meth:`onnxlrp.Explainer.explain`).

    Words (:mod:`onnxlrp.text.words`): ``word_groups[i]`` lists the piece indices of each word, ``words[i]`` the
    words as written, ``word_relevance[i][w] = Σ_{k ∈ word w} relevance[i][k]`` (exactly rounded).

    Per layer (``explain(..., per_layer=True)``): ``layers`` names the rows, ``"embedding"`` then each block's
    output (:func:`onnxlrp.text.layers.block_outputs`), ``layer_tensors`` the tensors; ``layer_relevance[i]`` is a
    ``(rows, tokens)`` array, row ``l`` the relevance of that tensor summed over its last (hidden) axis.
    """

    texts: list[str]
    tokens: list[list[str]]
    relevance: list[np.ndarray]
    special: list[list[bool]]
    offsets: list[list[tuple[int, int]]]
    output: np.ndarray
    target: np.ndarray
    method: str
    params: dict
    embedding: str
    output_name: str
    embedding_relevance: np.ndarray
    labels: list[str] | None = None
    extra: dict = field(default_factory=dict)
    intermediate: dict = field(default_factory=dict)
    word_groups: list[list[list[int]]] = field(default_factory=list)
    words: list[list[str]] = field(default_factory=list)
    word_relevance: list[np.ndarray] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)
    layer_tensors: list[str] = field(default_factory=list)
    layer_relevance: list[np.ndarray] = field(default_factory=list)

    def label(self, k: int) -> str:
        return self.labels[k] if self.labels is not None and 0 <= k < len(self.labels) else str(k)

    def units(self, i: int, view: str = "words") -> list[dict]:
        """Text ``i`` as displayed units: words (each with its ``pieces``) or pieces (the tokens)."""
        check_view(view)
        if view == "pieces":
            return [{"token": tok, "relevance": float(r), "special": bool(s), "offsets": list(o)}
                    for tok, r, s, o in zip(self.tokens[i], self.relevance[i], self.special[i], self.offsets[i])]
        out = []
        for word, r, group in zip(self.words[i], self.word_relevance[i], self.word_groups[i]):
            spans = [self.offsets[i][k] for k in group]
            out.append({"word": word, "relevance": float(r), "special": all(self.special[i][k] for k in group),
                        "offsets": [min(a for a, _ in spans), max(b for _, b in spans)], "pieces": list(group),
                        "piece_tokens": [self.tokens[i][k] for k in group]})
        return out

    def layer_table(self, i: int, view: str = "words") -> np.ndarray:
        """Text ``i``'s ``(rows, units)`` per-layer relevance, per word or per piece (empty without
        ``per_layer``)."""
        check_view(view)
        if not self.layers:
            return np.zeros((0, 0))
        table = self.layer_relevance[i]
        return table if view == "pieces" else sum_per_word(table, self.word_groups[i])

    def to_dict(self, view: str = "words") -> dict:
        """JSON-ready summary (what ``onnxlrp explain-text --json`` prints). Every text has its ``tokens``
        (pieces); with ``view="words"`` (the default) also its ``words``, each with the indices of its pieces."""
        check_view(view)
        out = []
        for i, text in enumerate(self.texts):
            logits = np.asarray(self.output[i], dtype=np.float64).reshape(-1)
            t = int(self.target[i])
            item = {"text": text, "target": t, "target_label": self.label(t), "logit": float(logits[t]),
                    "predicted": int(logits.argmax()), "probability": float(softmax(logits)[t]),
                    "relevance_sum": float(self.relevance[i].sum()), "tokens": self.units(i, "pieces")}
            if view == "words":
                item["words"] = self.units(i, "words")
            if self.layers:
                item["layers"] = {"rows": list(self.layers), "tensors": list(self.layer_tensors),
                                  "relevance": self.layer_table(i, view).tolist()}
            out.append(item)
        return {"method": self.method, "params": self.params, "embedding": self.embedding,
                "output": self.output_name, "view": view, "texts": out}

    def html(self, title: str = "onnxlrp: token relevance", view: str = "words") -> str:
        """A self-contained HTML page: each text's words (or pieces, ``view="pieces"``) coloured by signed
        relevance (red positive, blue negative, white zero; scaled per text by its largest absolute value); hover
        shows the value (and a word's pieces). With ``per_layer`` a token x layer table follows each text."""
        check_view(view)
        return render_html([self], title, view=view)


def check_view(view: str) -> None:
    if view not in VIEWS:
        raise UsageError(f"unknown view {view!r}; views are: {', '.join(VIEWS)}")


# ---------------------------------------------------------------------------------------------------- explainer
def token_roles(inputs) -> dict[str, str]:
    """The role of each integer model input (``ValueInfoProto`` list), by name as Hugging Face exports them:
    ``{"ids": ..., "mask": ..., "type": ..., "position": ...}``; ``ids`` is the input named like ids, input or
    token, else the only integer input left. :class:`NameSelectionError` when the ids input cannot be told."""
    ints = [i for i in inputs if i.type.tensor_type.elem_type in INT_TYPES]
    roles: dict[str, str] = {}
    for i in ints:
        low = i.name.lower()
        if "mask" in low:
            roles.setdefault("mask", i.name)
        elif "type" in low or "segment" in low:
            roles.setdefault("type", i.name)
        elif "position" in low:
            roles.setdefault("position", i.name)
        elif "ids" in low or "input" in low or "token" in low:
            roles.setdefault("ids", i.name)
    if "ids" not in roles:
        rest = [i.name for i in ints if i.name not in roles.values()]
        if len(rest) != 1:
            raise NameSelectionError(
                "cannot tell which model input takes the token ids: integer inputs are "
                f"{', '.join(repr(i.name) for i in ints) or 'none'}; name it input_ids")
        roles["ids"] = rest[0]
    return roles


class TextExplainer:
    """Explain a text classifier exported to ONNX, per token.

    Parameters
    ----------
    model : path, bytes or onnx.ModelProto
    tokenizer : path of ``tokenizer.json`` or a ``tokenizers.Tokenizer``
    embedding : str, optional
        The token-embedding tensor relevance is computed for (default: the ``Gather`` output found from the ids).
    output_name : str, optional
        The explained output when the model has several (a final Softmax is skipped, as in ``Explainer``).
    max_length : int, optional
        Truncate longer texts (a model with a fixed sequence length pads and truncates to it anyway).
    feeds : mapping, optional
        Values for model inputs other than the ones filled from the tokenizer.
    dtype, device, explain_softmax : as for :class:`onnxlrp.Explainer`.
    labels : list of str, optional
        Class names for the HTML view and JSON.
    """

    def __init__(self, model, tokenizer, *, embedding: str | None = None, output_name: str | None = None,
                 max_length: int | None = None, feeds: Mapping | None = None, dtype: str = "float32",
                 device: str = "cpu", explain_softmax: bool = False, labels: Sequence[str] | None = None):
        from ..engine.graph import Graph
        from ..explainer import Explainer

        self.tokenizer = load_tokenizer(tokenizer)
        self.label_names = list(labels) if labels is not None else None
        graph = Graph(model)  # validates and loads (clear errors for missing/broken files)
        self.model = graph.model
        self.feeds = {k: np.asarray(v) for k, v in (feeds or {}).items()}
        inputs = [i for i in self.model.graph.input
                  if i.name not in {t.name for t in self.model.graph.initializer}]
        self.roles = self._roles(inputs)
        ids = self.roles["ids"]
        self.ids_info = next(i for i in inputs if i.name == ids)
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in self.ids_info.type.tensor_type.shape.dim]
        if len(dims) != 2:
            raise NameSelectionError(f"input {ids!r} should be (batch, tokens); it has {len(dims)} dimensions")
        self.seq_len = dims[1] if isinstance(dims[1], int) and dims[1] > 0 else None
        self.max_length = self.seq_len or max_length
        self.embedding = embedding or find_embedding(self.model, ids)
        gather = next((n for n in self.model.graph.node if self.embedding in n.output), None)
        if gather is None:
            raise NameSelectionError(f"the model has no tensor named {self.embedding!r} produced by a node")
        self.width = self._embedding_width(gather)
        shape = [d if isinstance(d, int) and d > 0 else (d or f"{ids}_dim{k}") for k, d in enumerate(dims)]
        self.cut = cut_at(self.model, self.embedding, shape + [self.width])
        self.explainer = Explainer(self.cut.SerializeToString(), input_name=self.embedding, output_name=output_name,
                                   device=device, dtype=dtype, explain_softmax=explain_softmax)
        import onnxruntime as ort
        probe = upstream_model(self.model, self.embedding, table_type(self.model, gather))
        self._embed = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
        self._embed_inputs = {i.name for i in probe.graph.input}
        self._blocks: list[tuple[str, str]] | None = None

    # ------------------------------------------------------------------------------------------ model inputs
    def _roles(self, inputs) -> dict[str, str]:
        roles = token_roles(inputs)
        known = set(roles.values()) | set(self.feeds)
        other = [i.name for i in inputs if i.name not in known]
        if other:
            raise NameSelectionError(f"the model input {other[0]!r} is not filled by the tokenizer; pass it in "
                                     "feeds=")
        return roles

    def _embedding_width(self, gather) -> int:
        for t in self.model.graph.initializer:
            if t.name == gather.input[0] and len(t.dims) == 2:
                return int(t.dims[1])
        for vi in list(self.model.graph.value_info) + list(self.model.graph.output):
            if vi.name == gather.output[0]:
                dims = vi.type.tensor_type.shape.dim
                if dims and dims[-1].HasField("dim_value"):
                    return int(dims[-1].dim_value)
        raise EmbeddingNotFoundError(f"cannot tell the width of embedding {gather.output[0]!r}")

    def encode(self, texts: Sequence[str]):
        """Tokenise ``texts``: (encodings, model feeds with the ids, mask, token types and positions)."""
        tok = self.tokenizer
        if self.max_length is not None:
            tok.enable_truncation(self.max_length)
        pad = tok.padding
        if self.seq_len is not None:
            tok.enable_padding(length=self.seq_len, **self._pad_args(pad))
        elif pad is None or pad.get("length") is not None:
            tok.enable_padding(**self._pad_args(pad))
        encodings = tok.encode_batch(list(texts))
        feeds: dict[str, np.ndarray] = {}
        arrays = {"ids": [e.ids for e in encodings], "mask": [e.attention_mask for e in encodings],
                  "type": [e.type_ids for e in encodings]}
        for role, name in self.roles.items():
            info = next(i for i in self.model.graph.input if i.name == name)
            dtype = INT_TYPES[info.type.tensor_type.elem_type]
            if role == "position":
                n, t = len(encodings), len(encodings[0].ids)
                feeds[name] = np.broadcast_to(np.arange(t, dtype=dtype), (n, t)).copy()
            else:
                feeds[name] = np.asarray(arrays[role], dtype=dtype)
        return encodings, {**feeds, **self.feeds}

    def _pad_args(self, pad) -> dict:
        if pad:
            return {"pad_id": pad["pad_id"], "pad_token": pad["pad_token"], "pad_type_id": pad.get("pad_type_id", 0)}
        vocab = self.tokenizer.get_vocab()
        for token in ("[PAD]", "<pad>", "<PAD>", "[pad]"):
            if token in vocab:
                return {"pad_id": vocab[token], "pad_token": token}
        return {"pad_id": 0, "pad_token": self.tokenizer.id_to_token(0) or "[PAD]"}

    # ------------------------------------------------------------------------------------------ explain
    def blocks(self) -> list[tuple[str, str]]:
        """``[(label, tensor), ...]``: the tensors between transformer blocks, from the embedding side
        (:func:`onnxlrp.text.layers.block_outputs`)."""
        if self._blocks is None:
            self._blocks = block_outputs(self.cut, self.embedding)
        return self._blocks

    def explain(self, texts: str | Sequence[str], method: str = DEFAULT_METHOD, target=None, *,
                per_layer: bool = False, **kwargs) -> TextExplanation:
        """Explain one text or a list of texts. ``target``: ``None`` (predicted class), an int, or one per text;
        ``per_layer``: also the relevance per token after each block (``layers``, ``layer_relevance``); further
        keyword arguments go to :meth:`onnxlrp.Explainer.explain` (method parameters, ``rules``, ``keep``, ...)."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise NameSelectionError("no text to explain")
        encodings, feeds = self.encode(texts)
        (emb,) = self._embed.run([self.embedding], {k: v for k, v in feeds.items() if k in self._embed_inputs})
        ex = self.explainer
        cut_inputs = {i.name for i in self.cut.graph.input} - {self.embedding}
        side = {k: v for k, v in feeds.items() if k in cut_inputs}
        blocks = self.blocks() if per_layer else []
        if per_layer and not blocks:
            raise NameSelectionError("per_layer: cannot find the block boundaries of this model (no node scopes such "
                                     "as /layer.3/ or /h.3/, and no residual Add feeding a LayerNormalization)")
        if blocks:
            keep = kwargs.pop("keep", ())
            kwargs["keep"] = keep if keep == "all" else [*keep, *(t for _, t in blocks if t not in keep)]
        res = ex.explain(np.asarray(emb, dtype=ex.dtype if ex.dtype == np.float64 else emb.dtype), method=method,
                         target=target, feeds=side, **kwargs)
        per_token = np.asarray(res.relevance, dtype=np.float64).sum(axis=-1)
        rows = [per_token] + [self._per_token(res.intermediate, tensor, per_token.shape) for _, tensor in blocks]
        tokens, rel, special, offsets, groups, words, layer_rel = [], [], [], [], [], [], []
        for i, enc in enumerate(encodings):
            keep = [k for k, m in enumerate(enc.attention_mask) if m]
            tokens.append([enc.tokens[k] for k in keep])
            rel.append(per_token[i, keep])
            special.append([bool(enc.special_tokens_mask[k]) for k in keep])
            offsets.append([tuple(enc.offsets[k]) for k in keep])
            groups.append(word_groups(tokens[-1], special[-1], offsets[-1], [enc.word_ids[k] for k in keep]))
            words.append(word_texts(texts[i], groups[-1], tokens[-1], special[-1], offsets[-1]))
            layer_rel.append(np.stack([row[i, keep] for row in rows]) if blocks else np.zeros((0, len(keep))))
        return TextExplanation(texts=texts, tokens=tokens, relevance=rel, special=special, offsets=offsets,
                               output=res.output, target=res.target, method=method, params=res.params,
                               embedding=self.embedding, output_name=res.output_name,
                               embedding_relevance=res.relevance, labels=self.label_names,
                               intermediate=dict(res.intermediate), word_groups=groups, words=words,
                               word_relevance=[sum_per_word(r, g) for r, g in zip(rel, groups)],
                               layers=["embedding", *(label for label, _ in blocks)] if blocks else [],
                               layer_tensors=[self.embedding, *(t for _, t in blocks)] if blocks else [],
                               layer_relevance=layer_rel if blocks else [])

    @staticmethod
    def _per_token(kept: Mapping, tensor: str, shape: tuple) -> np.ndarray:
        """The relevance of a kept block output summed over its hidden axis, ``(batch, tokens)``."""
        if tensor not in kept:
            raise NameSelectionError(f"per_layer: the method returned no relevance for block output {tensor!r} "
                                     "(it keeps no intermediate relevance, or the tensor is off the relevance path)")
        value = np.asarray(kept[tensor], dtype=np.float64)
        if value.ndim != 3 or value.shape[:2] != tuple(shape):
            raise NameSelectionError(f"per_layer: block output {tensor!r} has shape {value.shape}, not (batch, "
                                     f"tokens, hidden) = {tuple(shape)} + (hidden,)")
        return value.sum(axis=-1)


def explain_text(model, tokenizer, texts, method: str = DEFAULT_METHOD, target=None, **kwargs) -> TextExplanation:
    """One-call form: ``TextExplainer(model, tokenizer, ...).explain(texts, method, target, ...)``."""
    ctor = {k: kwargs.pop(k) for k in ("embedding", "output_name", "max_length", "feeds", "dtype", "device",
                                       "explain_softmax", "labels") if k in kwargs}
    return TextExplainer(model, tokenizer, **ctor).explain(texts, method=method, target=target, **kwargs)


__all__ = ["TextExplainer", "TextExplanation", "explain_text", "load_tokenizer", "find_embedding", "cut_at",
           "upstream_model", "token_roles", "check_view", "VIEWS"]
