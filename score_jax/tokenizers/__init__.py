"""Tokenizers: sentencepiece, HF tokenizer.json and GGUF-embedded vocabularies
behind one `Tokenizer` interface, with chat turns built as exact ids.

  tok = load_tokenizer("gemma3-270m")          # or gguf:/sentencepiece:/hf:...
  ids = tok.apply_chat_template([{"role": "user", "content": "2+2?"}])
  turn2 = ids + y1_ids + tok.followup_ids(p2)   # y1 ends with end_of_turn_id
"""

from score_jax.tokenizers.gguf_metadata import GGUFFormatError, read_gguf_metadata
from score_jax.tokenizers.load import byte_tokenizer, load_tokenizer
from score_jax.tokenizers.tokenizer import CHAT_FORMATS, Tokenizer

__all__ = ["CHAT_FORMATS", "GGUFFormatError", "Tokenizer", "byte_tokenizer",
           "load_tokenizer", "read_gguf_metadata"]
