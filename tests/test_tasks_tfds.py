"""GSM8K through TFDS `data_source` (array_record, no TensorFlow), offline.

Runs where tensorflow-datasets and array-record are installed. The fixture
prepares the real `gsm8k` builder's array_record files from the JSONL copies
in ../shared/data (its download step is replaced: no network here; the
Socratic splits are not available offline and are left out).
"""

import os

import pytest

from score_jax.tasks import get_task

tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("array_record")

_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                     "shared", "data")


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  files = {s: os.path.join(_DATA, f"gsm8k_{s}.jsonl") for s in ("train", "test")}
  if not all(os.path.exists(f) for f in files.values()):
    pytest.skip("GSM8K JSONL files not found")
  from tensorflow_datasets.text.gsm8k import gsm8k  # pylint: disable=g-import-not-at-top
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  original = gsm8k.Gsm8k._split_generators
  gsm8k.Gsm8k._split_generators = lambda self, dl: {
      s: self._generate_examples(f) for s, f in files.items()}
  try:
    tfds.builder("gsm8k", data_dir=data_dir,
                 file_format="array_record").download_and_prepare()
  finally:
    gsm8k.Gsm8k._split_generators = original
  return data_dir


def test_gsm8k_from_tfds_matches_the_jsonl(tfds_dir):
  task = get_task("gsm8k", source="tfds", tfds_data_dir=tfds_dir)
  problems = task.problems("test")
  jsonl = get_task("gsm8k", test_path=os.path.join(_DATA, "gsm8k_test.jsonl"))
  expected = jsonl.problems("test")
  assert len(problems) == 1319
  assert sorted((p.prompt, p.reference) for p in problems) == sorted(
      (p.prompt, p.reference) for p in expected)
  sample = problems[:50]
  assert task.rewards(sample, [task.solution(p) for p in sample]) == [1.0] * 50
  assert len(task.problems("train")) == 7473
