"""The sampler and the multi-turn rollout on tiny presets (CPU, float32)."""

import collections
import functools
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_jax import models, sampling
from score_jax.sampling import decode as decode_lib
from score_jax.sampling import rules

GREEDY = sampling.SamplingConfig(greedy=True)
PROMPTS = [[5, 17, 33, 9], [40, 41], [7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 3]]
# tiny-gemma3 has 4-token sliding windows, shorter than every sequence here.
PRESETS = ["tiny-llama", "tiny-gemma3"]


@pytest.fixture(scope="module", params=PRESETS)
def model(request):
  config = models.get_preset(request.param)
  return config, models.init_params(config, jax.random.key(0))


@functools.partial(jax.jit, static_argnames="config")
def _forward(config, params, tokens, positions, valid):
  return models.Transformer(config).apply({"params": params}, tokens,
                                          positions, valid)[0]


def _forward_logits(config, params, tokens, positions, valid):
  """Full forward without cache: float32 logits [B, T, V] as numpy."""
  return np.asarray(_forward(config, params, jnp.asarray(tokens),
                             jnp.asarray(positions), jnp.asarray(valid)))


def _naive_greedy(config, params, prompt, steps, stop_ids, width=48):
  """Argmax of a full forward without cache over the sequence so far.

  The sequence is right-padded to `width` invalid slots so that one compiled
  forward serves every length.
  """
  seq = list(prompt)
  out = []
  for _ in range(steps):
    n = len(seq)
    logits = _forward_logits(config, params, [seq + [0] * (width - n)],
                             [list(range(width))],
                             [[True] * n + [False] * (width - n)])
    token = int(np.argmax(logits[0, n - 1]))
    out.append(token)
    seq.append(token)
    if token in stop_ids:
      break
  return out


def _turn_ids(r, turn, row):
  mask = np.asarray(r.turn_masks[turn, row])
  return np.asarray(r.tokens[row])[mask].tolist()


def _valid_ids(r, row):
  return np.asarray(r.tokens[row])[np.asarray(r.valid[row])].tolist()


def test_greedy_matches_naive_full_forward(model):
  config, params = model
  r = sampling.rollout(config, params, PROMPTS, num_turns=1,
                       max_new_tokens=12, stop_ids=[255],
                       rng=jax.random.key(1), sampling=GREEDY)
  for i, prompt in enumerate(PROMPTS):
    assert _turn_ids(r, 0, i) == _naive_greedy(config, params, prompt, 12,
                                               [255])


def test_greedy_two_turns_match_naive_on_the_exact_ids(model):
  config, params = model
  followup = [3, 4, 5]
  r = sampling.rollout(config, params, PROMPTS, followup_ids=followup,
                       max_new_tokens=[6, 5], stop_ids=[255],
                       rng=jax.random.key(1), sampling=GREEDY)
  for i, prompt in enumerate(PROMPTS):
    y1 = _turn_ids(r, 0, i)
    y2 = _turn_ids(r, 1, i)
    assert y1 == _naive_greedy(config, params, prompt, 6, [255])
    assert y2 == _naive_greedy(config, params, prompt + y1 + followup, 5,
                               [255])


@pytest.mark.slow
def test_output_independent_of_padding_and_neighbours(model):
  config, params = model
  kw = dict(followup_ids=[3, 4], max_new_tokens=[5, 4], stop_ids=[255],
            rng=jax.random.key(2))
  alone = sampling.rollout(config, params, PROMPTS[:1], sampling=GREEDY, **kw)
  crowded = sampling.rollout(config, params, PROMPTS[::-1], sampling=GREEDY,
                             prompt_buckets=[64], **kw)
  for t in range(2):
    assert _turn_ids(alone, t, 0) == _turn_ids(crowded, t, 2)
  np.testing.assert_allclose(
      np.asarray(alone.logprobs[0])[np.asarray(alone.turn_masks[:, 0]).any(0)],
      np.asarray(crowded.logprobs[2])[
          np.asarray(crowded.turn_masks[:, 2]).any(0)], atol=1e-5)
  # Sampling draws with a per-row key: the same row samples the same tokens
  # whatever its padding and the other rows' prompts.
  temp = sampling.SamplingConfig(temperature=1.0)
  a = sampling.rollout(config, params, [PROMPTS[0], PROMPTS[1]],
                       sampling=temp, **kw)
  b = sampling.rollout(config, params, [PROMPTS[0], PROMPTS[2]],
                       sampling=temp, prompt_buckets=[32], **kw)
  for t in range(2):
    assert _turn_ids(a, t, 0) == _turn_ids(b, t, 0)


def test_same_key_same_rollout_other_key_differs():
  config = models.get_preset("tiny-llama")
  params = models.init_params(config, jax.random.key(0))
  kw = dict(followup_ids=[3], max_new_tokens=8, stop_ids=[255],
            samples_per_prompt=4, sampling=sampling.SamplingConfig(1.0))
  a = sampling.rollout(config, params, PROMPTS, rng=jax.random.key(3), **kw)
  b = sampling.rollout(config, params, PROMPTS, rng=jax.random.key(3), **kw)
  c = sampling.rollout(config, params, PROMPTS, rng=jax.random.key(4), **kw)
  np.testing.assert_array_equal(a.tokens, b.tokens)
  np.testing.assert_array_equal(a.logprobs, b.logprobs)
  assert not np.array_equal(a.tokens, c.tokens)
  # Prompt-major rows: row p * k + j holds prompt p.
  for row in range(12):
    assert _valid_ids(a, row)[:len(PROMPTS[row // 4])] == PROMPTS[row // 4]


def test_stop_ids_end_rows_and_nothing_after_is_counted(model):
  config, params = model
  probe = sampling.rollout(config, params, PROMPTS, num_turns=1,
                           max_new_tokens=6, stop_ids=[255],
                           rng=jax.random.key(0), sampling=GREEDY)
  # Stop prompt 0 on its third greedy token; the others keep their own.
  stop = _turn_ids(probe, 0, 0)[2]
  r = sampling.rollout(config, params, PROMPTS, followup_ids=[3, 4],
                       max_new_tokens=6, stop_ids=[stop, 255],
                       rng=jax.random.key(0), sampling=GREEDY)
  y1 = _turn_ids(r, 0, 0)
  assert y1 == _turn_ids(probe, 0, 0)[:y1.index(stop) + 1]
  assert bool(r.stopped[0, 0]) and int(r.lengths[0, 0]) == len(y1)
  self_check_rollout(r, [stop, 255], [6, 6], pad_id=0)


def self_check_rollout(r, stop_ids, budgets, pad_id):
  """Invariants every rollout keeps, row by row and turn by turn."""
  tokens, valid = np.asarray(r.tokens), np.asarray(r.valid)
  masks, logp = np.asarray(r.turn_masks), np.asarray(r.logprobs)
  lengths, stopped = np.asarray(r.lengths), np.asarray(r.stopped)
  assert not (masks & ~valid[None]).any()
  assert (masks.sum(0) <= 1).all()
  assert (tokens[~valid] == pad_id).all()
  assert (logp[~masks.any(0)] == 0).all() and (logp[masks.any(0)] < 0).all()
  np.testing.assert_array_equal(
      r.positions, np.maximum(np.cumsum(valid, -1) - 1, 0))
  for t, budget in enumerate(budgets):
    for b in range(tokens.shape[0]):
      ids = tokens[b][masks[t, b]].tolist()
      assert len(ids) == lengths[t, b]
      is_stop = [i in stop_ids for i in ids]
      assert not any(is_stop[:-1])  # nothing sampled after a stop
      assert stopped[t, b] == (bool(ids) and is_stop[-1])
      if not stopped[t, b]:
        assert lengths[t, b] == budget
      # A turn's sampled slots are contiguous, gaps only after them.
      cols = np.flatnonzero(masks[t, b])
      assert (np.diff(cols) == 1).all()


def test_rollout_invariants_when_sampling_with_many_stops():
  config = models.get_preset("tiny-gemma3")
  params = models.init_params(config, jax.random.key(0))
  stops = list(range(0, 256, 9))  # ~11% of the vocab: most rows stop early
  r = sampling.rollout(config, params, PROMPTS, followup_ids=[3, 4],
                       num_turns=3, samples_per_prompt=8,
                       max_new_tokens=[10, 6, 4], stop_ids=stops,
                       rng=jax.random.key(5), pad_id=1, end_of_turn_id=2,
                       sampling=sampling.SamplingConfig(temperature=1.0))
  stopped = np.asarray(r.stopped)
  assert stopped.any() and not stopped.all()
  self_check_rollout(r, stops, [10, 6, 4], pad_id=1)


def test_next_turn_input_is_the_exact_ids_in_order():
  config = models.get_preset("tiny-gemma3")
  params = models.init_params(config, jax.random.key(0))
  # end_of_turn is one stop id among others, as Gemma's is beside <eos>.
  stops, eot = list(range(0, 256, 13)), 26
  followups = [[3, 4, 5], [6, 7]]
  k = 16
  r = sampling.rollout(config, params, PROMPTS, followup_ids=followups,
                       num_turns=3, samples_per_prompt=k,
                       max_new_tokens=[8, 6, 5], stop_ids=stops,
                       rng=jax.random.key(6), pad_id=1, end_of_turn_id=eot,
                       sampling=sampling.SamplingConfig(temperature=1.0))
  # The layout the trainer's memory check and `score-jax plan` assume.
  assert r.tokens.shape[1] == sampling.layout_length(
      sampling.bucket_length(max(map(len, PROMPTS))), [8, 6, 5], [3, 2],
      end_of_turn=True)
  endings = collections.Counter()
  for row in range(len(PROMPTS) * k):
    expected = list(PROMPTS[row // k])
    for t in range(3):
      turn = _turn_ids(r, t, row)
      expected += turn
      if t < 2:
        # Every model turn is closed by exactly one end_of_turn: its own
        # stop token, else one the sampler adds (no turn mask covers it)
        # after a turn cut by its budget or ended by another stop id.
        ending = ("end_of_turn" if turn[-1] == eot else
                  "other stop" if bool(r.stopped[t, row]) else "budget")
        endings[ending] += 1
        expected += ([] if ending == "end_of_turn" else [eot]) + followups[t]
    assert _valid_ids(r, row) == expected
  assert set(endings) == {"end_of_turn", "other stop", "budget"}, endings


def test_logprobs_equal_one_training_forward_over_the_rollout(model):
  config, params = model
  r = sampling.rollout(config, params, PROMPTS, followup_ids=[3, 4, 5],
                       samples_per_prompt=2, max_new_tokens=[7, 6],
                       stop_ids=list(range(0, 256, 17)),
                       rng=jax.random.key(7), end_of_turn_id=250,
                       sampling=sampling.SamplingConfig(temperature=1.0))
  logits = _forward_logits(config, params, r.tokens, r.positions, r.valid)
  logp = jax.nn.log_softmax(jnp.asarray(logits[:, :-1]), axis=-1)
  tokens = np.asarray(r.tokens)
  recomputed = np.take_along_axis(np.asarray(logp), tokens[:, 1:, None],
                                  -1)[..., 0]
  trained = np.asarray(r.turn_masks).any(0)[:, 1:]
  assert trained.sum() > 20
  np.testing.assert_allclose(recomputed[trained],
                             np.asarray(r.logprobs)[:, 1:][trained],
                             atol=1e-5, rtol=0)


def test_each_turn_samples_by_its_own_rule(model):
  """Greedy turn 1, turn 2 at T = 2: turn 1 is the greedy rollout's, and
  each sampled token's log-prob is that of its own turn's rule."""
  config, params = model
  kw = dict(followup_ids=[3, 4, 5], max_new_tokens=[6, 8], stop_ids=[255],
            rng=jax.random.key(2), samples_per_prompt=2)
  hot = sampling.SamplingConfig(temperature=2.0)
  r = sampling.rollout(config, params, PROMPTS, sampling=[GREEDY, hot], **kw)
  greedy = sampling.rollout(config, params, PROMPTS, sampling=GREEDY, **kw)
  for row in range(2 * len(PROMPTS)):
    assert _turn_ids(r, 0, row) == _turn_ids(greedy, 0, row)
  logits = np.asarray(_forward_logits(config, params, r.tokens, r.positions,
                                      r.valid))[:, :-1]
  tokens = np.asarray(r.tokens)[:, 1:, None]
  masks = np.asarray(r.turn_masks)[:, :, 1:]
  for turn, temperature in ((0, 1.0), (1, 2.0)):
    logp = jax.nn.log_softmax(jnp.asarray(logits / temperature), axis=-1)
    want = np.take_along_axis(np.asarray(logp), tokens, -1)[..., 0]
    np.testing.assert_allclose(np.asarray(r.logprobs)[:, 1:][masks[turn]],
                               want[masks[turn]], atol=1e-5, rtol=0)
  assert not all(_turn_ids(r, 1, row) == _turn_ids(greedy, 1, row)
                 for row in range(2 * len(PROMPTS)))
  with pytest.raises(ValueError, match="one per turn"):
    sampling.rollout(config, params, PROMPTS, sampling=[GREEDY], **kw)


def _first_token_logits(config, params, prompt, temperature):
  n = len(prompt)
  logits = _forward_logits(config, params, [prompt], [list(range(n))],
                           [[True] * n])[0, -1]
  return logits.astype(np.float64) / temperature


def test_sampled_frequencies_match_softmax_chi_square():
  config = models.get_preset("tiny-llama")
  params = models.init_params(config, jax.random.key(0))
  temperature, n = 0.7, 8192
  r = sampling.rollout(config, params, [PROMPTS[0]], num_turns=1,
                       samples_per_prompt=n, max_new_tokens=1, stop_ids=[0],
                       rng=jax.random.key(8),
                       sampling=sampling.SamplingConfig(temperature))
  first = np.asarray(r.tokens)[:, -1]
  scaled = _first_token_logits(config, params, PROMPTS[0], temperature)
  probs = np.exp(scaled - scaled.max())
  probs /= probs.sum()
  counts = np.bincount(first, minlength=config.vocab_size)
  # Pool the rare tokens so every cell expects >= 5 draws.
  order = np.argsort(probs)
  expected, observed = n * probs[order], counts[order]
  rare = np.cumsum(expected) < 5 * 4
  cells_e = np.append(expected[~rare], expected[rare].sum())
  cells_o = np.append(observed[~rare], observed[rare].sum())
  chi2 = float(((cells_o - cells_e)**2 / cells_e).sum())
  df = len(cells_e) - 1
  # Wilson-Hilferty 0.999 quantile of chi-square(df): a fixed seed fails
  # only if the sampler's distribution is off.
  z = 3.09
  critical = df * (1 - 2 / (9 * df) + z * np.sqrt(2 / (9 * df)))**3
  assert df > 50 and chi2 < critical, (chi2, critical, df)
  # The reported log-prob is log_softmax(logits / T) of the drawn token.
  np.testing.assert_allclose(
      np.asarray(r.logprobs)[:, -1],
      (scaled - scaled.max() - np.log(np.exp(scaled - scaled.max()).sum()))[
          first], atol=1e-4)


@pytest.mark.parametrize("top_k,top_p", [(5, None), (None, 0.5), (20, 0.7)])
def test_top_k_top_p_never_sample_outside_their_set(top_k, top_p):
  config = models.get_preset("tiny-llama")
  params = models.init_params(config, jax.random.key(0))
  temperature, n = 1.5, 2048
  r = sampling.rollout(config, params, [PROMPTS[0]], num_turns=1,
                       samples_per_prompt=n, max_new_tokens=1, stop_ids=[0],
                       rng=jax.random.key(9),
                       sampling=sampling.SamplingConfig(temperature, top_k,
                                                        top_p))
  scaled = _first_token_logits(config, params, PROMPTS[0], temperature)
  order = np.argsort(-scaled)
  keep = len(order) if top_k is None else top_k
  if top_p is not None:
    probs = np.exp(scaled[order[:keep]] - scaled[order[0]])
    probs /= probs.sum()
    keep = int(np.searchsorted(np.cumsum(probs), top_p) + 1)
  allowed = set(order[:keep].tolist())
  drawn = set(np.asarray(r.tokens)[:, -1].tolist())
  assert drawn <= allowed
  assert len(drawn) == len(allowed)  # and the whole set is reachable


def test_inverse_cdf_draw_matches_exact_search_and_skips_zero_weights():
  """The blocked inverse-CDF draw picks the token an exact (float64) search
  of the cumulative weights picks, never a zero-weight one, also at u -> 1
  and for a vocabulary that is not a multiple of the block."""
  rng = np.random.default_rng(0)
  B, V = 64, 1000
  weights = rng.exponential(size=(B, V)) * (rng.random((B, V)) < 0.7)
  weights[:, -300:] = 0.0  # whole zero blocks at the end, as top-k leaves
  weights[0] = 0.0
  weights[0, 3] = 1.0  # a row with one positive entry
  u = rng.random(B)
  u[:4] = [0.0, 1.0 - 2**-24, 0.5, 1.0 - 2**-24]
  got = np.asarray(rules._inverse_cdf(jnp.asarray(weights, jnp.float32),
                                      jnp.asarray(u, jnp.float32)))
  w32 = weights.astype(np.float32).astype(np.float64)
  cum = np.cumsum(w32, axis=1)
  want = np.array([np.searchsorted(c, x * c[-1], side="right")
                   for c, x in zip(cum, u.astype(np.float32))])
  assert (w32[np.arange(B), got] > 0).all()
  assert got[0] == 3
  # Float32 partial sums may move a draw that lands within rounding of a
  # boundary of the exact interval to the neighbouring token; any other
  # difference is a wrong search.
  for r in np.flatnonzero(got != want):
    target = u.astype(np.float32)[r] * cum[r, -1]
    lo = cum[r, want[r] - 1] if want[r] else 0.0
    assert min(abs(target - lo), abs(cum[r, want[r]] - target)) < (
        1e-5 * cum[r, -1]), (r, got[r], want[r])


def test_inverse_cdf_over_a_gemma_size_vocabulary_skips_zero_weights():
  """Top-k over 262,144 ids (1,024 blocks): XLA's CPU cumsum over the block
  sums can rise across an empty block, where a draw landed on a token of
  weight 0 (before `_rising_cumsum`, 7 of the first row's 432 draws did).
  The draws probe every boundary between weighted blocks, a few ulps either
  side."""
  V = 1024 * 256
  rng = np.random.default_rng(1)
  logits = (rng.standard_normal((2, V)) * 2.0).astype(np.float32)
  logits[:, rng.integers(0, V, 20)] += 10.0
  draw = jax.jit(jax.vmap(lambda w, u: rules._inverse_cdf(w, u[None])[0],
                          in_axes=(None, 0)))
  for row in logits:
    row = jnp.asarray(row[None])
    weights = jnp.exp(rules.truncate(row, 50, None) - row.max())
    w64 = np.asarray(weights, np.float64)[0]
    sums = w64.reshape(-1, 256).sum(-1)
    ends = np.cumsum(sums)[sums > 0][:-1] / sums.sum()
    u = (ends[:, None].astype(np.float32)
         + np.arange(-4, 5, dtype=np.float32) * np.float32(2**-24)).ravel()
    tokens = np.asarray(draw(weights, jnp.asarray(u[(u >= 0) & (u < 1)])))
    assert (w64[tokens] > 0).all(), tokens[w64[tokens] == 0]


def test_greedy_picks_the_first_maximum():
  logits = jnp.asarray([[1.0, 3.0, 3.0, 2.0], [5.0, -1.0, 0.0, 5.0]])
  tokens, logp = sampling.sample_logits(logits, jax.random.key(0),
                                        sampling.SamplingConfig(greedy=True))
  assert tokens.tolist() == [1, 0]
  np.testing.assert_allclose(
      logp, [jax.nn.log_softmax(logits[0])[1], jax.nn.log_softmax(logits[1])[0]],
      rtol=1e-6)


def test_truncate_keeps_the_top_token_for_tiny_top_p():
  logits = jnp.asarray([[0.0, 5.0, 1.0, 4.9]])
  out = np.asarray(sampling.truncate(logits, None, 1e-6))
  assert np.isfinite(out).tolist() == [[False, True, False, False]]
  out = np.asarray(sampling.truncate(logits, 2, None))
  assert np.isfinite(out).tolist() == [[False, True, False, True]]


def test_reusing_the_cache_equals_prefilling_again(model):
  config, params = model
  kw = dict(followup_ids=[3, 4], num_turns=3, max_new_tokens=[5, 4, 4],
            stop_ids=[255], rng=jax.random.key(10), end_of_turn_id=250,
            sampling=GREEDY)
  a = sampling.rollout(config, params, PROMPTS, **kw)
  b = sampling.rollout(config, params, PROMPTS, reuse_cache=False, **kw)
  np.testing.assert_array_equal(a.tokens, b.tokens)
  np.testing.assert_array_equal(a.valid, b.valid)
  np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)


def test_texts_are_the_decoded_turns_without_stop_token():
  config = models.get_preset("tiny-llama")
  params = models.init_params(config, jax.random.key(0))
  stops = list(range(0, 256, 7))
  r = sampling.rollout(config, params, PROMPTS, followup_ids=[3],
                       max_new_tokens=6, stop_ids=stops, rng=jax.random.key(1),
                       decode_fn=lambda ids: ",".join(map(str, ids)),
                       sampling=sampling.SamplingConfig(1.0))
  assert len(r.texts) == 2 and all(len(t) == 3 for t in r.texts)
  for t in range(2):
    for b in range(3):
      ids = _turn_ids(r, t, b)
      if bool(r.stopped[t, b]):
        ids = ids[:-1]
      assert r.texts[t][b] == ",".join(map(str, ids))
  # Host-only: through jit the arrays survive and texts are dropped.
  through = jax.jit(lambda x: x)(r)
  assert through.texts == ()
  np.testing.assert_array_equal(through.tokens, r.tokens)


@pytest.mark.slow
def test_a_run_compiles_a_bounded_number_of_programs():
  config = models.get_preset("tiny-llama")
  params = models.init_params(config, jax.random.key(0))
  kw = dict(followup_ids=[3, 4], max_new_tokens=[6, 6], stop_ids=[255],
            sampling=sampling.SamplingConfig(1.0))
  sampling.rollout(config, params, [[1] * 5] * 4, rng=jax.random.key(0), **kw)
  before = sampling.compile_count()
  # Other prompts of the same bucket and other keys: no new program.
  for step in range(3):
    prompts = [[step + 2] * n for n in (3, 9, 16, 11)]
    sampling.rollout(config, params, prompts, rng=jax.random.key(step), **kw)
  assert sampling.compile_count() == before
  # A longer bucket adds its own programs only: init, prefill, followup,
  # decode.
  sampling.rollout(config, params, [[1] * 20] * 4, rng=jax.random.key(0), **kw)
  assert sampling.compile_count() == before + 4
  assert sampling.bucket_length(17) == 32 and sampling.bucket_length(3) == 16


def test_decode_loop_writes_the_cache_in_place():
  """No copy of the KV cache in the compiled decode loop, every cache buffer
  is donated (its parameter aliases an output), and the loop reads per-layer
  weights: no stacked [L, ...] weight enters the program (slicing one per
  layer would copy the weights every step)."""
  config = models.get_preset("tiny-llama")
  params = models.init_params(config, jax.random.key(0))
  layers = decode_lib.unstack_params(params)
  state = decode_lib.init_state(config, 3, 40, 0)
  hlo = decode_lib.decode.lower(
      params, layers, state, jnp.int32(0), jnp.int32(5), jax.random.key(0),
      config=config, sampling=sampling.SamplingConfig(), stop_ids=(1,),
      pad_id=0).compile().as_text()
  # One layer's k [B, K, Dh, S] and v [B, K, S, Dh].
  for cache_shape in ("f32[3,2,16,40]", "f32[3,2,40,16]"):
    assert cache_shape in hlo
    assert not re.search(re.escape(cache_shape) + r"\S* copy\(", hlo)
  assert "dynamic-update-slice" in hlo
  header = hlo.splitlines()[0]
  aliased = {int(i) for i in re.findall(r"\((\d+), \{\}, may-alias\)", header)}
  cache_params = re.findall(
      r"parameter\((\d+)\), metadata=\{op_name=\"state\[\\'cache\\'\]"
      r"\[\\'[kv]\\'\]\[\d+\]", hlo)
  assert len(cache_params) == 2 * config.num_layers
  assert {int(i) for i in cache_params} <= aliased
  names = re.findall(r"parameter\(\d+\), metadata=\{op_name=\"([^\"]*)\"", hlo)
  assert any(n.startswith("layers[1]") for n in names)
  assert not [n for n in names if n.startswith("params[\\'layers")]


def test_bad_input_gets_a_clear_error():
  config = models.get_preset("tiny-llama")
  params = models.init_params(config, jax.random.key(0))
  kw = dict(followup_ids=[3], max_new_tokens=4, stop_ids=[1],
            rng=jax.random.key(0))
  with pytest.raises(ValueError, match="prompt 1 has no tokens"):
    sampling.rollout(config, params, [[1], []], **kw)
  with pytest.raises(ValueError, match="outside the vocab"):
    sampling.rollout(config, params, [[1, 999]], **kw)
  with pytest.raises(ValueError, match="max_new_tokens has 3 entries"):
    sampling.rollout(config, params, [[1]], **dict(kw, max_new_tokens=[4] * 3))
  with pytest.raises(ValueError, match="followup_ids must not be empty"):
    sampling.rollout(config, params, [[1]], **dict(kw, followup_ids=[]))
  with pytest.raises(ValueError, match="largest bucket 8"):
    sampling.rollout(config, params, [[1] * 9], prompt_buckets=[8], **kw)
  with pytest.raises(ValueError, match="top_p must be in"):
    sampling.SamplingConfig(top_p=0.0)


def test_table_rows_past_the_tokenizer_are_never_sampled():
  """A model whose tables have rows past the tokenizer's ids (Gemma 3 4B-27B,
  padded checkpoints) never emits them: load_policy sets output_vocab, the
  logits there are masked, and a rollout whose extra rows would win every
  draw decodes. The training forward gives the same log-probs."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  from score_jax import sharding, train  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location(
      "smoke", pathlib.Path(__file__).parents[1] / "configs" / "smoke.py")
  smoke = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(smoke)
  config = smoke.get_config()
  config.model.preset_overrides.vocab_size = 264 + 64
  ctx = sharding.ShardingCtx(sharding.make_mesh((1, 1, 1)))
  model_config, params, tokenizer = train.load_policy(config, ctx)
  assert (model_config.vocab_size, model_config.output_vocab) == (328, 264)
  # The 64 extra output rows point along the final hidden state: unmasked,
  # they would be the argmax everywhere.
  params = jax.tree.map(lambda x: x, params)
  head = params["lm_head"]
  params["lm_head"] = head.at[:, 264:].set(
      100.0 * jnp.abs(head).max())
  prompt = tokenizer.apply_chat_template(
      [{"role": "user", "content": "Compute 2 + 3."}])
  unmasked = sampling.rollout(
      model_config.replace(output_vocab=None), params, [prompt],
      followup_ids=tokenizer.followup_ids("Check."), max_new_tokens=6,
      stop_ids=tokenizer.stop_ids, rng=jax.random.key(0),
      pad_id=tokenizer.pad_id, end_of_turn_id=tokenizer.end_of_turn_id)
  assert (np.asarray(unmasked.tokens) >= 264).any()
  for rule in (sampling.SamplingConfig(greedy=True),
               sampling.SamplingConfig(temperature=1.0)):
    r = sampling.rollout(
        model_config, params, [prompt],
        followup_ids=tokenizer.followup_ids("Check."), samples_per_prompt=4,
        max_new_tokens=6, stop_ids=tokenizer.stop_ids, rng=jax.random.key(1),
        decode_fn=tokenizer.decode, pad_id=tokenizer.pad_id,
        end_of_turn_id=tokenizer.end_of_turn_id, sampling=rule)
    assert int(np.asarray(r.tokens).max()) < 264
    assert len(r.texts) == 2
  logits = _forward_logits(model_config, params, r.tokens, r.positions,
                           r.valid)
  logp = np.asarray(jax.nn.log_softmax(jnp.asarray(logits[:, :-1]), -1))
  recomputed = np.take_along_axis(logp, np.asarray(r.tokens)[:, 1:, None],
                                  -1)[..., 0]
  trained = np.asarray(r.turn_masks).any(0)[:, 1:]
  np.testing.assert_allclose(recomputed[trained],
                             np.asarray(r.logprobs)[:, 1:][trained],
                             atol=1e-5, rtol=0)
  assert np.isfinite(logp).all()
