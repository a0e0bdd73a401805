"""`Tokenizer`: one interface over every engine, with chat formats as exact ids.

Chat formats (`chat_format`):
  gemma   `<bos><start_of_turn>user\n{content}<end_of_turn>\n<start_of_turn>model\n`
          ('assistant' is written 'model'; a leading system message is folded
          into the first user turn as `{system}\n\n{content}`; contents are
          stripped, like Gemma 3's own template).
  chatml  `<|im_start|>{role}\n{content}<|im_end|>\n` ... `<|im_start|>assistant\n`
          (no BOS; a `default_system` prompt, e.g. SmolLM2's, is added when the
          conversation does not start with a system message, like its template).
  plain   no template, for pretrained models prompted few-shot. Roles are
          ignored; a turn is its content and a blank line ('\n\n'); the
          generation prompt is nothing; a follow-up is '\n\n' + instruction +
          '\n\n' (a plain model turn has no end-of-turn token). BOS comes
          first when the model wants it (`add_bos`). apply_chat_template
          encodes all turns as one text (better merges than joining turn ids)
          and leaves out the last blank line when add_generation_prompt=False.

Control tokens are always inserted as ids and text between them is encoded on
its own, which is exactly what an HF tokenizer does to a rendered template;
the two turns of SCoRe are therefore built as x ⊕ y1 ⊕ followup_ids(p2)
without re-tokenising y1.
"""

from __future__ import annotations

from typing import Sequence

from score_jax.tokenizers.backends import Backend

CHAT_FORMATS = ("gemma", "chatml", "plain")
_ROLES = {
    "gemma": {"user": "user", "assistant": "model", "model": "model"},
    "chatml": {"system": "system", "user": "user", "assistant": "assistant"},
}


class Tokenizer:
  """Text <-> int ids, special ids and chat turns for one model.

  Attributes:
    backend: the engine (backends.Backend) that converts plain text.
    bos_id, eos_id, pad_id: special ids (bos_id is None when there is none).
    end_of_turn_id, start_of_turn_id: chat markers (None for 'plain').
    stop_ids: ids that end generation: eos and end of turn.
    vocab_size: number of ids the tokenizer can produce.
    chat_format: 'gemma' | 'chatml' | 'plain'.
    add_bos: whether the model expects BOS before a plain prompt.
    default_system: ChatML system prompt used when none is given, or None.
  """

  def __init__(self, backend: Backend, *, eos_id: int, pad_id: int,
               bos_id: int | None, chat_format: str,
               start_of_turn_id: int | None = None,
               end_of_turn_id: int | None = None, add_bos: bool = False,
               default_system: str | None = None, name: str = ""):
    if chat_format not in CHAT_FORMATS:
      raise ValueError(f"chat_format {chat_format!r} is not one of "
                       f"{CHAT_FORMATS}")
    if chat_format != "plain" and (start_of_turn_id is None
                                   or end_of_turn_id is None):
      raise ValueError(f"{name or 'tokenizer'}: chat format {chat_format!r} "
                       f"needs start- and end-of-turn tokens in the vocabulary")
    self.backend = backend
    self.name = name
    self.vocab_size = backend.vocab_size
    for key, value in (("eos_id", eos_id), ("pad_id", pad_id),
                       ("bos_id", bos_id), ("start_of_turn_id",
                                            start_of_turn_id),
                       ("end_of_turn_id", end_of_turn_id)):
      if value is not None and not 0 <= value < self.vocab_size:
        raise ValueError(f"{name or 'tokenizer'}: {key}={value} is outside "
                         f"the vocabulary [0, {self.vocab_size})")
    self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
    self.chat_format = chat_format
    plain = chat_format == "plain"
    self.start_of_turn_id = None if plain else start_of_turn_id
    self.end_of_turn_id = None if plain else end_of_turn_id
    self.stop_ids = tuple(dict.fromkeys(
        i for i in (eos_id, self.end_of_turn_id) if i is not None))
    self.add_bos = add_bos
    self.default_system = default_system if chat_format == "chatml" else None

  def __repr__(self) -> str:
    return (f"Tokenizer({self.name!r}, vocab_size={self.vocab_size}, "
            f"chat_format={self.chat_format!r}, bos={self.bos_id}, "
            f"eos={self.eos_id}, pad={self.pad_id}, stop={self.stop_ids})")

  # -- text ------------------------------------------------------------------

  def encode(self, text: str, add_bos: bool = False) -> list[int]:
    """Ids of `text` (control-token text stays text); BOS first if asked."""
    if not isinstance(text, str):
      raise TypeError(f"encode expects str, got {type(text).__name__}")
    ids = self.backend.encode(text)
    if add_bos:
      if self.bos_id is None:
        raise ValueError(f"{self.name}: add_bos=True but this vocabulary has "
                         f"no BOS token")
      ids = [self.bos_id] + ids
    return ids

  def decode(self, ids: Sequence[int]) -> str:
    """Text of `ids`. Pad ids are skipped, unless the pad id is also a stop id
    (SmolLM2 pads with <|im_end|>): then it is kept, as it ends a turn. Control
    tokens render as their text."""
    ids = [int(i) for i in ids]
    bad = [i for i in ids if not 0 <= i < self.vocab_size]
    if bad:
      raise ValueError(f"{self.name}: ids {bad[:5]} are outside the "
                       f"vocabulary [0, {self.vocab_size})")
    if self.pad_id not in self.stop_ids:
      ids = [i for i in ids if i != self.pad_id]
    return self.backend.decode(ids)

  def token_to_id(self, token: str) -> int | None:
    """Id of one vocabulary entry spelled as in the vocabulary, or None."""
    return self.backend.token_to_id(token)

  # -- chat ------------------------------------------------------------------

  def turn_ids(self, role: str, content: str) -> list[int]:
    """Ids of one complete turn incl. its end-of-turn marker and newline."""
    if self.chat_format == "plain":
      return self.encode(content + "\n\n")
    return self._turn(self._role(role), self._content(content))

  def generation_prompt_ids(self) -> list[int]:
    """What opens the model's turn: '<start_of_turn>model\\n',
    '<|im_start|>assistant\\n', or nothing for 'plain'."""
    if self.chat_format == "plain":
      return []
    role = "model" if self.chat_format == "gemma" else "assistant"
    return [self.start_of_turn_id] + self.encode(role + "\n")

  def followup_ids(self, instruction: str) -> list[int]:
    """Ids that follow a model turn which ended WITH its end-of-turn token:
    the rest of that turn ('\\n'), a user turn with `instruction`, and the
    generation prompt. For 'plain': '\\n\\n' + instruction + '\\n\\n'.
    A turn that did not end with its end-of-turn token (cut off by the
    length budget, or ended by another stop id such as Gemma's <eos>): append
    [end_of_turn_id] to it before these ids, as the sampler does."""
    if self.chat_format == "plain":
      return self.encode("\n\n" + instruction + "\n\n")
    return (self.encode("\n") + self.turn_ids("user", instruction)
            + self.generation_prompt_ids())

  def apply_chat_template(self, messages: Sequence[dict],
                          add_generation_prompt: bool = True) -> list[int]:
    """Token ids of a conversation [{'role': ..., 'content': ...}, ...]."""
    messages = _check_messages(messages, self.name)
    if self.chat_format == "plain":
      text = "\n\n".join(m["content"] for m in messages)
      if add_generation_prompt:
        text += "\n\n"
      return self.encode(text, add_bos=self.add_bos)
    if self.chat_format == "gemma":
      ids = [] if self.bos_id is None else [self.bos_id]
      ids += self._gemma_turns(messages)
    else:
      ids = []
      if self.default_system is not None and messages[0]["role"] != "system":
        ids += self.turn_ids("system", self.default_system)
      for m in messages:
        ids += self.turn_ids(m["role"], m["content"])
    if add_generation_prompt:
      ids += self.generation_prompt_ids()
    return ids

  def _gemma_turns(self, messages: list[dict]) -> list[int]:
    prefix = ""
    if messages[0]["role"] == "system":
      prefix = messages[0]["content"] + "\n\n"
      messages = messages[1:]
    ids = []
    for k, m in enumerate(messages):
      role = self._role(m["role"])
      expected = "user" if k % 2 == 0 else "model"
      if role != expected:
        raise ValueError(f"{self.name}: Gemma turns must alternate user/model "
                         f"starting with user; message {k} is {m['role']!r}")
      ids += self._turn(role, (prefix if k == 0 else "") + m["content"].strip())
    return ids

  def _turn(self, role: str, content: str) -> list[int]:
    return ([self.start_of_turn_id] + self.encode(f"{role}\n{content}")
            + [self.end_of_turn_id] + self.encode("\n"))

  def _role(self, role: str) -> str:
    roles = _ROLES[self.chat_format]
    if role not in roles:
      hint = (" (a system message may only come first, in apply_chat_template)"
              if role == "system" else "")
      raise ValueError(f"{self.name}: role {role!r} is not valid in the "
                       f"{self.chat_format} format; expected one of "
                       f"{sorted(roles)}{hint}")
    return roles[role]

  def _content(self, content: str) -> str:
    return content.strip() if self.chat_format == "gemma" else content


def _check_messages(messages: Sequence[dict], name: str) -> list[dict]:
  if not messages:
    raise ValueError(f"{name}: apply_chat_template needs at least one message")
  out = []
  for k, m in enumerate(messages):
    if (not isinstance(m, dict) or not isinstance(m.get("role"), str)
        or not isinstance(m.get("content"), str)):
      raise ValueError(f"{name}: message {k} must be a dict with str 'role' "
                       f"and 'content', got {m!r}")
    out.append(m)
  return out
