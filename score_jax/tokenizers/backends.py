"""Text <-> ids engines behind `Tokenizer`: sentencepiece, HF `tokenizers`, bytes.

A backend only converts plain text. Every backend follows one rule for control
tokens (`<start_of_turn>`, `<|im_end|>`, `<bos>`, ...): text never encodes to a
control id (the text "<end_of_turn>" inside a math problem stays text, so data
cannot end a turn), and decoding a control id renders its text. Chat templates
insert control tokens as ids (see tokenizer.py). User-defined pieces (Gemma's
runs of spaces/newlines, `<table>`, ...) are matched in text like any piece.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import sentencepiece as spm
import tokenizers


class Backend(Protocol):
  """What `Tokenizer` needs from an engine."""

  vocab_size: int

  def encode(self, text: str) -> list[int]:
    """Ids of `text`, no BOS/EOS added."""

  def decode(self, ids: Sequence[int]) -> str:
    """Text of `ids`; control tokens render as their text."""

  def token_to_id(self, token: str) -> int | None:
    """Id of a token spelled as in the vocabulary, or None."""

  def id_to_token(self, token_id: int) -> str:
    """The vocabulary spelling of one id."""


class SentencePieceBackend:
  """A sentencepiece model, from a `.model` file or an in-memory ModelProto."""

  def __init__(self, model_proto: bytes):
    self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
    self.processor = self._sp  # for its special ids (bos_id(), eos_id(), ...)
    self.vocab_size = self._sp.get_piece_size()
    self._control = frozenset(
        i for i in range(self.vocab_size) if self._sp.is_control(i))
    # With add_dummy_prefix, sentencepiece drops the leading space of the
    # first piece it decodes; a run decoded after a control token is not the
    # start of the text, so that space is put back.
    first = self._sp.encode("x", out_type=str)
    self._drops_first_space = bool(first) and first[0].startswith("\u2581")

  def encode(self, text: str) -> list[int]:
    return self._sp.encode(text)

  def decode(self, ids: Sequence[int]) -> str:
    parts, run = [], []

    def flush():
      if run:
        text = self._sp.decode(run)
        if (parts and self._drops_first_space
            and self._sp.id_to_piece(run[0]).startswith("\u2581")):
          text = " " + text
        parts.append(text)
        run.clear()

    for i in ids:
      if i in self._control:
        flush()
        parts.append(self._sp.id_to_piece(i))
      else:
        run.append(i)
    flush()
    return "".join(parts)

  def token_to_id(self, token: str) -> int | None:
    i = self._sp.piece_to_id(token)
    # piece_to_id answers unk_id for unknown pieces.
    return i if self._sp.id_to_piece(i) == token else None

  def id_to_token(self, token_id: int) -> str:
    return self._sp.id_to_piece(token_id)


class HFBackend:
  """A `tokenizers.Tokenizer` (from a tokenizer.json or built in memory)."""

  def __init__(self, tokenizer: tokenizers.Tokenizer):
    self._tk = tokenizer
    self.tokenizer = tokenizer
    # Special added tokens are matched in text unless told not to (see the
    # module docstring); non-special added tokens still are.
    self._tk.encode_special_tokens = True
    self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)

  def encode(self, text: str) -> list[int]:
    return self._tk.encode(text, add_special_tokens=False).ids

  def decode(self, ids: Sequence[int]) -> str:
    return self._tk.decode(list(ids), skip_special_tokens=False)

  def token_to_id(self, token: str) -> int | None:
    return self._tk.token_to_id(token)

  def id_to_token(self, token_id: int) -> str:
    return self._tk.id_to_token(token_id)


class ByteBackend:
  """UTF-8 bytes after `len(specials)` control tokens: id = byte + offset."""

  def __init__(self, specials: Sequence[str]):
    self._specials = tuple(specials)
    self._offset = len(self._specials)
    self.vocab_size = self._offset + 256

  def encode(self, text: str) -> list[int]:
    return [b + self._offset for b in text.encode("utf-8")]

  def decode(self, ids: Sequence[int]) -> str:
    parts, run = [], bytearray()
    for i in ids:
      if i < self._offset:
        parts.append(run.decode("utf-8", errors="replace"))
        run = bytearray()
        parts.append(self._specials[i])
      else:
        run.append(i - self._offset)
    parts.append(run.decode("utf-8", errors="replace"))
    return "".join(parts)

  def token_to_id(self, token: str) -> int | None:
    if token in self._specials:
      return self._specials.index(token)
    raw = token.encode("utf-8")
    return raw[0] + self._offset if len(raw) == 1 else None

  def id_to_token(self, token_id: int) -> str:
    if token_id < self._offset:
      return self._specials[token_id]
    return bytes([token_id - self._offset]).decode("utf-8", errors="replace")
