"""Text explanations: cut a text model at its token embedding, explain the embedding, sum per token.

>>> tx = onnxlrp.text.TextExplainer("classifier.onnx", "tokenizer.json")
>>> res = tx.explain(["a fine film", "a dull film"], method="epsilon")
"""
from __future__ import annotations

from ..errors import EmbeddingNotFoundError, MissingDependencyError, TokenizerError
from ..views.tokens import render_html, token_colour
from .explainer import (
                        TextExplainer,
                        TextExplanation,
                        cut_at,
                        explain_text,
                        find_embedding,
                        load_tokenizer,
                        token_roles,
                        upstream_model,
)
from .layers import block_outputs
from .words import word_groups

__all__ = ["TextExplainer", "TextExplanation", "explain_text", "load_tokenizer", "render_html", "token_colour",
           "find_embedding", "cut_at", "upstream_model", "token_roles", "block_outputs", "word_groups",
           "MissingDependencyError", "TokenizerError", "EmbeddingNotFoundError"]
