"""Tokenizers: parity with transformers on the two real GGUF models, exact chat
ids, the three file backends, the byte tokenizer, and clear errors."""

import json
import os
import pathlib
import shutil

import gguf
import pytest
import tokenizers

from score_jax import packaged
from score_jax.tokenizers import (GGUFFormatError, byte_tokenizer,
                                  load_tokenizer, read_gguf_metadata)

STRINGS = [
    "The quick brown fox jumps over the lazy dog.",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "class A:\n\tdef f(self):\n\t\treturn {'a': [1, 2]}\n",
    r"Let $x = \frac{-b \pm \sqrt{b^2 - 4ac}}{2a}$, so $\boxed{\dfrac{3}{4}}$.",
    r"\begin{align} a_{n+1} &= a_n^2 \\ \int_0^1 x\,dx \end{align}",
    "31415926535897932384626433832795028841971",
    "Total: 1,234,567.89 and 2^64 = 18446744073709551616",
    "emoji 😀🎉👍🏽 and a flag 🇫🇷",
    "中文：你好，世界。日本語のテキスト。한국어 문장.",
    "  leading spaces", "trailing spaces   ", "  both  ",
    "multiple     spaces\n\n\n\nand newlines\r\n\tend",
    "", " ", "\n", "Ünïcödé àccents — “quotes” …",
    "Final Answer: The final answer is $42$. I hope it is correct.",
]
# Whitespace before a digit or other number character (½, ²): llama.cpp (and
# SmolLM2's own tokenizer.json) split every digit off before the GPT-2 regex,
# transformers' GGUF converter does not, so these differ between the two (see
# test_smollm2_digit_split_follows_llama_cpp).
SMOLLM_DIGIT_CASES = ["x =  1", "a\n 1", "    42", "[1,  2,   3]\n\t7",
                      "… ½ and x ²"]
GEMMA3_IT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if message['role'] == 'assistant' -%}{%- set role = 'model' -%}"
    "{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}")
CONVERSATIONS = [
    [{"role": "user", "content": "What is 17 + 25?"}],
    [{"role": "system", "content": "You are a careful mathematician."},
     {"role": "user", "content": "Solve x^2 = 4."}],
    [{"role": "user", "content": "  Write fib in Python.\n"},
     {"role": "assistant", "content": "def fib(n):\n    return n"},
     {"role": "user", "content": "There might be an error. Correct it."}],
]


_DATA = pathlib.Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def _real_texts():
  """MATH500 problems and solutions, MBPP prompts, code and tests: 3,922
  texts, 0.8 MB (LaTeX, digits, Python with tabs, CRLF and long space runs)."""
  files = (_DATA / "math500_test.jsonl", _DATA / "mbpp.jsonl")
  if not all(f.exists() for f in files):
    pytest.skip(f"benchmark data not found under {_DATA}")
  texts = []
  with open(files[0]) as f:
    for line in f:
      row = json.loads(line)
      texts += [row["problem"], row["solution"]]
  with open(files[1]) as f:
    for line in f:
      row = json.loads(line)
      texts += [row["text"], row["code"], "\n".join(row["test_list"])]
  return texts


def _smollm_digit_split(ref):
  """transformers' SmolLM2 tokenizer with SmolLM2's own pre-tokenizer."""
  fixed = tokenizers.Tokenizer.from_str(ref.backend_tokenizer.to_str())
  fixed.pre_tokenizer = tokenizers.pre_tokenizers.Sequence([
      tokenizers.pre_tokenizers.Digits(individual_digits=True),
      tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False,
                                          use_regex=True)])
  return fixed


def _ids(out):
  """transformers' apply_chat_template returns ids or a BatchEncoding."""
  return list(out["input_ids"] if hasattr(out, "keys") else out)


@pytest.fixture(scope="module")
def smollm():
  return load_tokenizer("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def gemma():
  return load_tokenizer("gemma3-270m")


def _reference(name):
  transformers = pytest.importorskip("transformers")
  path = packaged.packaged_gguf_path(name)
  return transformers.AutoTokenizer.from_pretrained(
      os.path.dirname(path), gguf_file=os.path.basename(path))


@pytest.fixture(scope="session")
def ref_smollm():
  return _reference("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def ref_gemma():
  return _reference("gemma3-270m")


# -- the real models, on their own ------------------------------------------


@pytest.mark.parametrize("name", ["smollm", "gemma"])
def test_roundtrip_real_vocabularies(name, request):
  tok = request.getfixturevalue(name)
  for s in STRINGS + SMOLLM_DIGIT_CASES:
    assert tok.decode(tok.encode(s)) == s, s


def test_special_ids_of_real_models(smollm, gemma):
  assert smollm.chat_format == "chatml"
  assert (smollm.bos_id, smollm.eos_id, smollm.end_of_turn_id) == (1, 2, 2)
  assert smollm.stop_ids == (2,) and smollm.vocab_size == 49152
  assert gemma.chat_format == "gemma"
  assert (gemma.bos_id, gemma.eos_id, gemma.pad_id) == (2, 1, 0)
  assert (gemma.start_of_turn_id, gemma.end_of_turn_id) == (105, 106)
  assert set(gemma.stop_ids) == {1, 106} and gemma.vocab_size == 262144
  assert gemma.encode("hi", add_bos=True)[0] == 2


def test_gemma_chat_ids_are_the_reference_layout(gemma):
  # Gemma 3's vocabulary: 'user' 2364, 'model' 4368, '\n' 107.
  ids = gemma.apply_chat_template([{"role": "user", "content": "Hi"}])
  assert ids == [2, 105, 2364, 107] + gemma.encode("Hi") + [106, 107,
                                                            105, 4368, 107]
  assert gemma.generation_prompt_ids() == [105, 4368, 107]
  assert gemma.turn_ids("assistant", "4") == [105, 4368, 107] + gemma.encode(
      "4") + [106, 107]
  assert gemma.decode(ids) == ("<bos><start_of_turn>user\nHi<end_of_turn>\n"
                               "<start_of_turn>model\n")


def test_control_token_text_never_becomes_a_control_id(smollm, gemma):
  for tok, text in ((gemma, "<start_of_turn>user"), (gemma, "<end_of_turn>"),
                    (smollm, "<|im_end|>"), (smollm, "<|im_start|>user")):
    ids = tok.encode(text)
    assert not set(ids) & {tok.start_of_turn_id, tok.end_of_turn_id,
                           tok.eos_id, tok.bos_id}, text
    assert tok.decode(ids) == text
  # User-defined pieces are still matched whole: '<table>' and 4 spaces.
  assert gemma.encode("<table>") == [168]
  assert gemma.encode("    ") == [140]


@pytest.mark.parametrize("name", ["smollm", "gemma"])
def test_score_turn_two_is_turn_one_plus_followup(name, request):
  """x ⊕ y1 ⊕ followup_ids(p2) equals the template of the 3-message chat."""
  tok = request.getfixturevalue(name)
  x = tok.apply_chat_template([{"role": "user", "content": "What is 2+3?"}])
  y1 = tok.encode("2+3 = 6.") + [tok.end_of_turn_id]
  p2 = "There might be an error in the solution above. Correct it."
  full = tok.apply_chat_template([
      {"role": "user", "content": "What is 2+3?"},
      {"role": "assistant", "content": "2+3 = 6."},
      {"role": "user", "content": p2}])
  assert x + y1 + tok.followup_ids(p2) == full
  assert tok.end_of_turn_id in tok.stop_ids


def test_pad_is_skipped_unless_it_ends_turns(smollm, gemma):
  assert gemma.decode([0, 0] + gemma.encode("ok")) == "ok"
  # SmolLM2 pads with <|im_end|>, its end of turn: that one is kept.
  assert smollm.decode(smollm.encode("ok") + [2]) == "ok<|im_end|>"


def test_chat_format_can_be_forced(gemma):
  plain = load_tokenizer("gemma3-270m", chat_format="plain")
  assert plain.end_of_turn_id is None and plain.stop_ids == (1,)
  msgs = [{"role": "user", "content": "Q: 1+1?\nA: 2"},
          {"role": "user", "content": "Q: 2+2?\nA:"}]
  assert plain.apply_chat_template(msgs) == plain.encode(
      "Q: 1+1?\nA: 2\n\nQ: 2+2?\nA:\n\n", add_bos=True)
  assert plain.followup_ids("Check.") == plain.encode("\n\nCheck.\n\n")
  assert plain.generation_prompt_ids() == []
  with pytest.raises(ValueError, match="needs the tokens"):
    load_tokenizer("gemma3-270m", chat_format="chatml")


def test_gemma_roles_are_checked(gemma):
  with pytest.raises(ValueError, match="alternate"):
    gemma.apply_chat_template([{"role": "assistant", "content": "hi"}])
  with pytest.raises(ValueError, match="system"):
    gemma.turn_ids("system", "be brief")
  with pytest.raises(ValueError, match="'content'"):
    gemma.apply_chat_template([{"role": "user"}])
  with pytest.raises(ValueError, match="outside the vocabulary"):
    gemma.decode([262144])


# -- the fast metadata reader -------------------------------------------------


def test_metadata_reader_matches_gguf_reader():
  path = packaged.packaged_gguf_path("smollm2-135m-instruct")
  ours = read_gguf_metadata(path)
  reader = gguf.GGUFReader(path)
  assert set(ours) == {k for k in reader.fields if not k.startswith("GGUF.")}
  for key, field in reader.fields.items():
    if key.startswith("GGUF."):
      continue
    theirs = field.contents()
    mine = ours[key]
    mine = mine.tolist() if hasattr(mine, "tolist") else mine
    assert mine == theirs, key


def test_metadata_reader_reads_every_value_type(tmp_path):
  path = tmp_path / "types.gguf"
  writer = gguf.GGUFWriter(str(path), "llama")
  writer.add_uint8("t.u8", 7)
  writer.add_int8("t.i8", -7)
  writer.add_uint16("t.u16", 65535)
  writer.add_int16("t.i16", -300)
  writer.add_uint32("t.u32", 4_000_000_000)
  writer.add_int32("t.i32", -2_000_000_000)
  writer.add_float32("t.f32", 0.25)
  writer.add_bool("t.bool", True)
  writer.add_uint64("t.u64", 2**63 + 5)
  writer.add_int64("t.i64", -(2**40))
  writer.add_float64("t.f64", 1e-300)
  writer.add_string("t.str", "héllo ▁ 😀")
  writer.add_array("t.floats", [0.5, -1000.0, 3.25])
  writer.add_array("t.ints", [1, -2, 3])
  writer.add_array("t.strs", ["a", "", "  ", "<start_of_turn>"])
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  ours = read_gguf_metadata(str(path))
  reader = gguf.GGUFReader(str(path))
  for key, field in reader.fields.items():
    if key.startswith("GGUF."):
      continue
    mine = ours[key]
    mine = mine.tolist() if hasattr(mine, "tolist") else mine
    assert mine == field.contents(), key


# -- the three file backends --------------------------------------------------


def test_sentencepiece_model_file(gemma, tmp_path):
  path = tmp_path / "gemma.model"
  path.write_bytes(gemma.backend.processor.serialized_model_proto())
  tok = load_tokenizer(f"sentencepiece:{path}")
  assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.chat_format) == (
      2, 1, 0, "gemma")
  for s in STRINGS:
    assert tok.encode(s) == gemma.encode(s), s
  msgs = CONVERSATIONS[2]
  assert tok.apply_chat_template(msgs) == gemma.apply_chat_template(msgs)


# -- bad input ----------------------------------------------------------------


def test_missing_files_are_named(tmp_path):
  for kind in ("gguf", "sentencepiece", "hf"):
    missing = tmp_path / f"nope.{kind}"
    with pytest.raises(FileNotFoundError, match=str(missing)):
      load_tokenizer(f"{kind}:{missing}")


def test_unknown_spec_and_format():
  with pytest.raises(ValueError, match="unknown tokenizer spec 'llama-9b'"):
    load_tokenizer("llama-9b")
  with pytest.raises(ValueError, match="unknown tokenizer spec 'zip:a'"):
    load_tokenizer("zip:a")
  with pytest.raises(ValueError, match="chat_format 'alpaca'"):
    load_tokenizer("byte", chat_format="alpaca")


def test_not_a_gguf_file(tmp_path):
  path = tmp_path / "notes.gguf"
  path.write_text("these are not the bytes you are looking for")
  with pytest.raises(GGUFFormatError, match=f"{path} is not a GGUF file"):
    load_tokenizer(f"gguf:{path}")


def test_truncated_gguf(tmp_path):
  src = packaged.packaged_gguf_path("smollm2-135m-instruct")
  path = tmp_path / "cut.gguf"
  with open(src, "rb") as f:
    path.write_bytes(f.read(200_000))  # ends inside the vocabulary
  with pytest.raises(GGUFFormatError, match=f"{path}: malformed or truncated"):
    load_tokenizer(f"gguf:{path}")


def _write_gguf(path, **kv):
  writer = gguf.GGUFWriter(str(path), "llama")
  for key, value in kv.items():
    if isinstance(value, str):
      writer.add_string(key, value)
    else:
      writer.add_array(key, value)
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()


def _write_spm_gguf(path, eos=2):
  """A tiny Llama-2-style SentencePiece vocabulary (dummy prefix on)."""
  tokens = ["<unk>", "<s>", "</s>", "<start_of_turn>", "<end_of_turn>",
            "\u2581", "a", "b", "\u2581a", "ab", "\u2581ab"]
  writer = gguf.GGUFWriter(str(path), "llama")
  writer.add_tokenizer_model("llama")
  writer.add_token_list(tokens)
  writer.add_token_scores([0.0] * 5 + [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0])
  writer.add_token_types([2, 3, 3, 3, 3] + [1] * 6)
  writer.add_bos_token_id(1)
  writer.add_eos_token_id(eos)
  writer.add_unk_token_id(0)
  writer.add_add_space_prefix(True)
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()


def test_synthetic_sentencepiece_gguf_with_space_prefix(tmp_path):
  path = tmp_path / "spm.gguf"
  _write_spm_gguf(path)
  tok = load_tokenizer(f"gguf:{path}")
  assert tok.chat_format == "gemma" and tok.add_bos
  assert tok.encode("ab ab") == [10, 10]  # '▁ab' twice: the dummy prefix
  assert tok.decode(tok.encode("ab ab")) == "ab ab"
  # The space the prefix stands for is kept after a control token.
  assert tok.decode([1, 10, 4, 10]) == "<s> ab<end_of_turn> ab"
  bad = tmp_path / "bad_eos.gguf"
  _write_spm_gguf(bad, eos=99)
  with pytest.raises(ValueError, match=f"{bad}: tokenizer.ggml.eos_token_id "
                     "is 99, outside the vocabulary of 11"):
    load_tokenizer(f"gguf:{bad}")


@pytest.mark.parametrize("pre, ids", [("gpt2", [1, 4]), ("smollm", [1, 4]),
                                      ("llama-bpe", [5]), ("llama3", [5])])
def test_llama3_vocabularies_look_words_up_before_merging(tmp_path, pre, ids):
  """'abc' is a token no merge builds: Llama 3's pre-tokenizers take it
  whole (llama.cpp's ignore_merges), the others merge 'b c' only."""
  path = tmp_path / f"{pre}.gguf"
  writer = gguf.GGUFWriter(str(path), "llama")
  writer.add_tokenizer_model("gpt2")
  writer.add_tokenizer_pre(pre)
  writer.add_token_list(["<|end|>", "a", "b", "c", "bc", "abc"])
  writer.add_token_types([3, 1, 1, 1, 1, 1])
  writer.add_token_merges(["b c"])
  writer.add_eos_token_id(0)
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  tok = load_tokenizer(f"gguf:{path}")
  assert tok.encode("abc") == ids
  assert tok.decode(ids) == "abc"


def test_gguf_without_tokenizer(tmp_path):
  path = tmp_path / "weights_only.gguf"
  _write_gguf(path)
  with pytest.raises(ValueError, match=f"{path} has no tokenizer metadata"):
    load_tokenizer(f"gguf:{path}")


def test_gguf_with_unsupported_vocab_kind(tmp_path):
  path = tmp_path / "bert.gguf"
  _write_gguf(path, **{"tokenizer.ggml.model": "bert",
                       "tokenizer.ggml.tokens": ["[PAD]", "a"]})
  with pytest.raises(ValueError, match=f"{path}: tokenizer.ggml.model is 'bert'"):
    load_tokenizer(f"gguf:{path}")


def test_invalid_sentencepiece_and_tokenizer_json(tmp_path):
  bad = tmp_path / "bad.model"
  bad.write_bytes(b"\x00\x01garbage")
  with pytest.raises(ValueError, match=f"{bad} is not a valid sentencepiece"):
    load_tokenizer(f"sentencepiece:{bad}")
  js = tmp_path / "tokenizer.json"
  js.write_text('{"version": "1.0", "model": ')
  with pytest.raises(ValueError, match=f"{js} is not a valid tokenizer.json"):
    load_tokenizer(f"hf:{tmp_path}")


# -- the byte tokenizer -------------------------------------------------------


@pytest.mark.parametrize("fmt", ["gemma", "chatml", "plain"])
def test_byte_tokenizer(fmt):
  tok = byte_tokenizer(fmt)
  assert tok.vocab_size == 264 and tok.chat_format == fmt
  for s in STRINGS:
    ids = tok.encode(s)
    assert all(8 <= i < 264 for i in ids) and tok.decode(ids) == s
  assert tok.decode([0] + tok.encode("a") + [0]) == "a"
  if fmt == "plain":
    assert tok.stop_ids == (2,)
    return
  sot, eot = (("<start_of_turn>", "<end_of_turn>") if fmt == "gemma"
              else ("<|im_start|>", "<|im_end|>"))
  role = "model" if fmt == "gemma" else "assistant"
  ids = tok.apply_chat_template([{"role": "user", "content": "2+2?"}])
  bos = [1] if fmt == "gemma" else []
  assert ids == bos + [3] + tok.encode("user\n2+2?") + [4] + tok.encode(
      "\n") + [3] + tok.encode(f"{role}\n")
  assert tok.decode(ids) == ("<bos>" if bos else "") + (
      f"{sot}user\n2+2?{eot}\n{sot}{role}\n")
  assert tok.stop_ids == (2, 4)
  assert tok.token_to_id(eot) == 4


# -- parity with transformers (slow: it builds its tokenizers in Python) -----


@pytest.mark.slow
def test_smollm2_ids_equal_transformers(smollm, ref_smollm):
  for s in STRINGS:
    assert smollm.encode(s) == ref_smollm.encode(s, add_special_tokens=False), s


@pytest.mark.slow
def test_smollm2_digit_split_follows_llama_cpp(smollm, ref_smollm):
  """On whitespace before digits we follow llama.cpp's 'smollm' split (also in
  SmolLM2's own tokenizer.json: Digits then ByteLevel), which transformers'
  GGUF converter leaves out."""
  fixed = _smollm_digit_split(ref_smollm)
  for s in STRINGS + SMOLLM_DIGIT_CASES:
    assert smollm.encode(s) == fixed.encode(s, add_special_tokens=False).ids, s


@pytest.mark.slow
def test_real_data_ids_equal_the_reference_tokenizers(smollm, gemma, ref_smollm,
                                                      ref_gemma):
  """Every MATH500/MBPP text: same ids as the reference, and round trips.

  SmolLM2 is compared with its digit-splitting pre-tokenizer (see above).
  Gemma: sentencepiece matches the longest run of spaces it has a piece for
  (31), transformers' rebuilt BPE often stops at 16 (llama.cpp notes the
  same); the two may differ only on texts with a run of 17+ spaces.
  """
  texts = _real_texts()
  fixed = _smollm_digit_split(ref_smollm)
  want = fixed.encode_batch(texts, add_special_tokens=False)
  for s, w in zip(texts, want):
    ids = smollm.encode(s)
    assert ids == w.ids, s[:200]
    assert smollm.decode(ids) == s
  want = ref_gemma.backend_tokenizer.encode_batch(texts,
                                                  add_special_tokens=False)
  differ = set()
  for k, (s, w) in enumerate(zip(texts, want)):
    ids = gemma.encode(s)
    assert gemma.decode(ids) == s
    if ids != w.ids:
      differ.add(k)
  assert differ <= {k for k, s in enumerate(texts) if " " * 17 in s}
  assert gemma.encode(" " * 40) == [167, 145]  # 31 spaces + 9 spaces


@pytest.mark.slow
def test_smollm2_chat_template_equals_transformers(smollm, ref_smollm):
  for msgs in CONVERSATIONS:
    for gen in (True, False):
      ref = _ids(ref_smollm.apply_chat_template(
          msgs, tokenize=True, add_generation_prompt=gen))
      assert smollm.apply_chat_template(msgs, add_generation_prompt=gen) == ref


@pytest.mark.slow
def test_gemma3_ids_equal_transformers(gemma, ref_gemma):
  for s in STRINGS:
    assert gemma.encode(s) == ref_gemma.encode(s, add_special_tokens=False), s
    assert gemma.encode(s, add_bos=True) == ref_gemma.encode(s), s


@pytest.mark.slow
def test_gemma3_chat_template_equals_transformers(gemma, ref_gemma):
  for msgs in CONVERSATIONS:
    for gen in (True, False):
      ref = _ids(ref_gemma.apply_chat_template(
          msgs, chat_template=GEMMA3_IT_TEMPLATE, tokenize=True,
          add_generation_prompt=gen))
      assert gemma.apply_chat_template(msgs, add_generation_prompt=gen) == ref


@pytest.mark.slow
def test_hf_tokenizer_json_backend(smollm, ref_smollm, tmp_path):
  ref_smollm.save_pretrained(tmp_path)
  tok = load_tokenizer(f"hf:{tmp_path}")
  assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.chat_format) == (
      1, 2, 2, "chatml")
  assert tok.default_system == smollm.default_system is not None
  for s in STRINGS:
    assert tok.encode(s) == ref_smollm.encode(s, add_special_tokens=False), s
    assert tok.decode(tok.encode(s)) == s
  for msgs in CONVERSATIONS:
    assert tok.apply_chat_template(msgs) == smollm.apply_chat_template(msgs)
  shutil.rmtree(tmp_path)


@pytest.mark.slow
def test_hf_tokenizer_json_backend_gemma(gemma, ref_gemma, tmp_path):
  ref_gemma.save_pretrained(tmp_path)
  tok = load_tokenizer(f"hf:{tmp_path / 'tokenizer.json'}")
  assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.chat_format) == (
      2, 1, 0, "gemma")
  assert tok.add_bos  # read from the post-processor: the config has no flag
  for s in STRINGS:
    assert tok.encode(s) == ref_gemma.encode(s, add_special_tokens=False), s
    assert tok.decode(tok.encode(s)) == s
  for msgs in CONVERSATIONS:
    assert tok.apply_chat_template(msgs) == gemma.apply_chat_template(msgs)




def test_default_system_prompt_is_a_literal_of_the_template_not_its_code():
  from score_jax.tokenizers.load import default_system_prompt  # pylint: disable=g-import-not-at-top
  # Only the user's system message: no default (the regex alone took the
  # template's code for the text).
  user_only = ("{% if messages[0]['role'] == 'system' %}{{ '<|im_start|>"
               "system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
               "{% endif %}")
  assert default_system_prompt(user_only) is None
  # Qwen's shape: the user's branch first, the literal default after it.
  qwen = (user_only.replace("{% endif %}", "{% else %}") +
          "{{ '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. "
          "You are a helpful assistant.<|im_end|>\\n' }}{% endif %}")
  assert default_system_prompt(qwen) == (
      "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
