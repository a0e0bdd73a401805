"""Build a tokenizer engine from the vocabulary embedded in a GGUF file.

Two vocabulary kinds (`tokenizer.ggml.model`):
  gpt2   byte-level BPE (SmolLM2, Llama 3, Qwen, ...): a `tokenizers` BPE built
         in memory from `tokens` and `merges`; text is split first the way
         llama.cpp splits it for the file's `tokenizer.ggml.pre`.
  llama  SentencePiece (Gemma, Llama 1/2, Mistral v1): a sentencepiece
         ModelProto built in memory (BPE over `scores`, byte fallback).

GGUF token types are sentencepiece's piece types (1 normal, 2 unknown,
3 control, 4 user-defined, 5 unused, 6 byte), so they carry over unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sentencepiece import sentencepiece_model_pb2 as sp_pb2
import tokenizers
from tokenizers import decoders, pre_tokenizers

from score_jax.tokenizers.backends import HFBackend, SentencePieceBackend

CONTROL, USER_DEFINED = 3, 4
_GPT2_SPLIT = (r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+"
               r"|\s+(?!\S)")
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+"
                 r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
                 r"|\s+(?!\S)|\s+")
# tokenizer.ggml.pre -> regexes applied in turn, as in llama.cpp's
# llama-vocab.cpp. Each digit is its own word for the StarCoder family, which
# includes SmolLM2 ('smollm').
_PRE_SPLITS = {
    **{name: (_GPT2_SPLIT,) for name in ("default", "gpt2", "mpt", "olmo",
                                         "jais")},
    **{name: (r"\p{N}", _GPT2_SPLIT) for name in (
        "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone",
        "minerva")},
    **{name: (_LLAMA3_SPLIT,) for name in ("llama3", "llama-bpe", "llama-v3",
                                           "falcon3", "smaug-bpe")},
}
# Pre-tokenizers whose words are looked up whole in the vocabulary before any
# merge (llama.cpp's `ignore_merges`, Llama 3's tokenizer.json): a word that
# is a token stays one token even where the merges would not build it.
_IGNORE_MERGES = ("llama3", "llama-bpe", "llama-v3", "falcon3")


def gguf_backend(meta: dict[str, Any], path: str):
  """The engine for a GGUF file's `tokenizer.ggml.*` metadata."""
  kind = meta.get("tokenizer.ggml.model")
  if kind is None or "tokenizer.ggml.tokens" not in meta:
    raise ValueError(
        f"{path} has no tokenizer metadata (tokenizer.ggml.model and "
        f"tokenizer.ggml.tokens); load the tokenizer from another file")
  n = len(meta["tokenizer.ggml.tokens"])
  for key in ("bos", "eos", "unknown", "padding"):
    value = meta.get(f"tokenizer.ggml.{key}_token_id")
    if value is not None and not 0 <= value < n:
      raise ValueError(f"{path}: tokenizer.ggml.{key}_token_id is {value}, "
                       f"outside the vocabulary of {n} tokens")
  if kind == "gpt2":
    return _byte_level_bpe(meta, path)
  if kind == "llama":
    return _sentencepiece(meta, path)
  raise ValueError(f"{path}: tokenizer.ggml.model is {kind!r}; supported: "
                   f"'gpt2' (byte-level BPE) and 'llama' (SentencePiece)")


def _token_types(meta: dict[str, Any], n: int, path: str) -> np.ndarray:
  types = meta.get("tokenizer.ggml.token_type")
  if types is None:
    return np.ones(n, np.int32)
  if len(types) != n:
    raise ValueError(f"{path}: tokenizer.ggml.token_type has {len(types)} "
                     f"entries, expected one per token ({n})")
  return np.asarray(types)


def _byte_level_bpe(meta: dict[str, Any], path: str) -> HFBackend:
  tokens = meta["tokenizer.ggml.tokens"]
  merges = meta.get("tokenizer.ggml.merges")
  if merges is None:
    raise ValueError(f"{path}: a 'gpt2' vocabulary needs tokenizer.ggml.merges")
  pre = meta.get("tokenizer.ggml.pre", "default")
  if pre not in _PRE_SPLITS:
    raise ValueError(f"{path}: pre-tokenizer {pre!r} (tokenizer.ggml.pre) is "
                     f"not supported; supported: {sorted(_PRE_SPLITS)}")
  types = _token_types(meta, len(tokens), path)
  pairs = []
  for i, m in enumerate(merges):
    a, sep, b = m.partition(" ")
    if not sep:
      raise ValueError(f"{path}: merge {i} is {m!r}, expected 'left right'")
    pairs.append((a, b))
  model = tokenizers.models.BPE(
      vocab={t: i for i, t in enumerate(tokens)}, merges=pairs,
      ignore_merges=pre in _IGNORE_MERGES)
  tk = tokenizers.Tokenizer(model)
  tk.pre_tokenizer = pre_tokenizers.Sequence(
      [pre_tokenizers.Split(tokenizers.Regex(r), behavior="isolated")
       for r in _PRE_SPLITS[pre]]
      + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
  tk.decoder = decoders.ByteLevel()
  # Control and user-defined tokens stay whole (llama.cpp matches them before
  # BPE); `HFBackend` keeps the special ones from being matched in text.
  tk.add_special_tokens([tokenizers.AddedToken(tokens[i], normalized=False)
                         for i in np.flatnonzero(types == CONTROL)])
  tk.add_tokens([tokenizers.AddedToken(tokens[i], normalized=False)
                 for i in np.flatnonzero(types == USER_DEFINED)])
  return HFBackend(tk)


def _sentencepiece(meta: dict[str, Any], path: str) -> SentencePieceBackend:
  tokens = meta["tokenizer.ggml.tokens"]
  n = len(tokens)
  types = _token_types(meta, n, path)
  scores = meta.get("tokenizer.ggml.scores")
  if scores is None or len(scores) != n:
    raise ValueError(f"{path}: a 'llama' (SentencePiece) vocabulary needs "
                     f"tokenizer.ggml.scores with one score per token ({n})")
  unk = meta.get("tokenizer.ggml.unknown_token_id")
  types = types.copy()
  if unk is not None:
    types[unk] = 2  # sentencepiece needs exactly one UNKNOWN piece
  if int((types == 2).sum()) != 1:
    raise ValueError(f"{path}: expected exactly one unknown token, found "
                     f"{int((types == 2).sum())}")
  proto = sp_pb2.ModelProto()
  piece = sp_pb2.ModelProto.SentencePiece
  # llama.cpp stores whitespace inside pieces as real spaces (Gemma's runs of
  # spaces); sentencepiece matches pieces after escaping ' ' to U+2581.
  proto.pieces.extend(
      piece(piece=t.replace(" ", "\u2581"), score=s, type=k)
      for t, s, k in zip(tokens, scores.tolist(), types.tolist()))
  trainer = proto.trainer_spec
  trainer.model_type = sp_pb2.TrainerSpec.BPE
  trainer.vocab_size = n
  trainer.byte_fallback = bool((types == 6).any())
  # sentencepiece finds its special ids by these piece names.
  for field, key in (("unk", "unknown"), ("bos", "bos"), ("eos", "eos"),
                     ("pad", "padding")):
    value = meta.get(f"tokenizer.ggml.{key}_token_id")
    setattr(trainer, f"{field}_id", -1 if value is None else int(value))
    if value is not None:
      setattr(trainer, f"{field}_piece", tokens[value])
  norm = proto.normalizer_spec
  norm.name = "identity"
  norm.add_dummy_prefix = bool(meta.get("tokenizer.ggml.add_space_prefix",
                                        True))
  norm.remove_extra_whitespaces = False
  norm.escape_whitespaces = True
  try:
    return SentencePieceBackend(proto.SerializeToString())
  except RuntimeError as e:
    raise ValueError(f"{path}: its vocabulary does not make a valid "
                     f"sentencepiece model: {e}") from e
