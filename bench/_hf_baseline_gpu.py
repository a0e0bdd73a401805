"""Reference measurement for a GPU: device ceilings and HF transformers generate/train throughput (random weights).
Run: XLA_PYTHON_CLIENT_ALLOCATOR=platform python3 hf_baseline_gpu.py ; writes $OUT/anchor.json. A yardstick, not project code.
Copied from the team's shared tools (../shared/tools/hf_baseline_gpu.py, which does not travel to the
device machine) for bench/gpu_all.sh; one change: HF_BASELINE_STEPS=name,name runs only those steps."""
import json, os, time, importlib, sys, traceback
R = {}
def log(k, v):
    R[k] = v; print(json.dumps({k: v}), flush=True)

for m in ["jax", "jaxlib", "flax", "optax", "orbax.checkpoint", "ml_collections", "sentencepiece",
          "tensorflow_datasets", "torch", "transformers", "grain", "chex", "math_verify", "tunix"]:
    try:
        mod = importlib.import_module(m); log("ver_" + m, getattr(mod, "__version__", "?"))
    except Exception as e:
        log("ver_" + m, "MISSING " + type(e).__name__)

def jax_ceilings():
    import jax, jax.numpy as jnp
    log("jax_devices", str(jax.devices()))
    k = jax.random.PRNGKey(0)
    a = jax.random.normal(k, (8192, 8192), jnp.bfloat16); b = jax.random.normal(k, (8192, 8192), jnp.bfloat16)
    f = jax.jit(lambda a, b: a @ b)
    f(a, b).block_until_ready()
    t = time.perf_counter(); n = 20
    for _ in range(n): c = f(a, b)
    c.block_until_ready(); dt = (time.perf_counter() - t) / n
    log("jax_bf16_matmul_tflops", round(2 * 8192**3 / dt / 1e12, 1))
    x = jax.random.normal(k, (1024, 1024, 1024), jnp.bfloat16)  # 2 GiB
    g = jax.jit(lambda x: x * 1.0001)
    g(x).block_until_ready()
    t = time.perf_counter()
    for _ in range(n): y = g(x)
    y.block_until_ready(); dt = (time.perf_counter() - t) / n
    log("jax_hbm_rw_TBps", round(2 * x.size * 2 / dt / 1e12, 2))
    del a, b, c, x, y

def hf_generate(name, cfg_cls, model_cls, cfg_kw, batch, prompt_len, new_tokens, compile_static=False):
    import torch
    cfg = cfg_cls(**cfg_kw)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = model_cls(cfg).to(torch.bfloat16).eval()
    nparams = sum(p.numel() for p in model.parameters())
    ids = torch.randint(10, cfg.vocab_size - 10, (batch, prompt_len), device="cuda")
    kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
              pad_token_id=0)
    if compile_static:
        kw["cache_implementation"] = "static"; model.forward = torch.compile(model.forward, mode="reduce-overhead")
    with torch.no_grad():
        model.generate(ids, **dict(kw, max_new_tokens=8, min_new_tokens=8))
        torch.cuda.synchronize(); t = time.perf_counter()
        out = model.generate(ids, **kw)
        torch.cuda.synchronize(); dt = time.perf_counter() - t
    gen = (out.shape[1] - prompt_len) * batch
    log(f"hf_gen_{name}_b{batch}{'_static' if compile_static else ''}", dict(params_M=round(nparams/1e6,1), tok_per_s=round(gen/dt), seconds=round(dt,2)))
    del model; torch.cuda.empty_cache()

def hf_train(name, cfg_cls, model_cls, cfg_kw, batch, seq):
    import torch
    cfg = cfg_cls(**cfg_kw)
    with torch.device("cuda"):
        model = model_cls(cfg).to(torch.bfloat16).train()
    n = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(10, cfg.vocab_size - 10, (batch, seq), device="cuda")
    def step():
        loss = model(input_ids=ids, labels=ids).loss; loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    for _ in range(2): step()
    torch.cuda.synchronize(); t = time.perf_counter(); k = 5
    for _ in range(k): step()
    torch.cuda.synchronize(); dt = (time.perf_counter() - t) / k
    tok = batch * seq
    log(f"hf_train_{name}", dict(params_M=round(n/1e6,1), tok_per_s=round(tok/dt), step_s=round(dt,3), mfu_vs_989=round(6*n*tok/dt/989e12, 3)))
    del model, opt; torch.cuda.empty_cache()

steps = [("jax_ceilings", jax_ceilings)]
try:
    from transformers import GemmaConfig, GemmaForCausalLM, LlamaConfig, LlamaForCausalLM
    gemma2b = dict(vocab_size=256000, hidden_size=2048, intermediate_size=16384, num_hidden_layers=18, num_attention_heads=8,
                   num_key_value_heads=1, head_dim=256, max_position_embeddings=8192, hidden_activation="gelu_pytorch_tanh")
    smol = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                num_key_value_heads=3, max_position_embeddings=8192, rope_theta=100000, tie_word_embeddings=True)
    steps += [
        ("gen_smol_b64", lambda: hf_generate("smollm2_135m", LlamaConfig, LlamaForCausalLM, smol, 64, 256, 256)),
        ("gen_gemma2b_b64", lambda: hf_generate("gemma_2b", GemmaConfig, GemmaForCausalLM, gemma2b, 64, 256, 256)),
        ("train_gemma2b", lambda: hf_train("gemma_2b_b8x1024", GemmaConfig, GemmaForCausalLM, gemma2b, 8, 1024)),
    ]
    if os.environ.get("WITH_STATIC"):
        steps.append(("gen_gemma2b_b64_static", lambda: hf_generate("gemma_2b", GemmaConfig, GemmaForCausalLM, gemma2b, 64, 256, 256, True)))
except Exception as e:
    log("transformers_import", repr(e))
if os.environ.get("HF_BASELINE_STEPS"):
    wanted = os.environ["HF_BASELINE_STEPS"].split(",")
    log("steps_unknown", sorted(set(wanted) - {n for n, _ in steps}))
    steps = [(n, f) for n, f in steps if n in wanted]
for name, fn in steps:
    t = time.perf_counter()
    try: fn()
    except Exception as e: log(name + "_error", traceback.format_exc()[-800:])
    log(name + "_wall_s", round(time.perf_counter() - t, 1))
os.makedirs(os.environ.get("OUT", "out"), exist_ok=True)
json.dump(R, open(os.path.join(os.environ.get("OUT", "out"), "anchor.json"), "w"), indent=1)
