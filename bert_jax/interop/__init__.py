"""Pretrained BERT weights in and out: Google's TF checkpoints, Hugging Face directories
(safetensors or pytorch_model.bin, read without torch) and our own training workdirs.

  pretrained = load_pretrained("uncased_L-12_H-768_A-12")    # or an HF dir, or a workdir
  params, missing = restore_into(pretrained, fresh_params)  # fresh_params: our init tree
  export_hf("out_dir", pretrained.config, pretrained.params, pretrained.vocab_file)

``python -m bert_jax.convert`` wraps the last line for the command line.
"""

from bert_jax.interop.hf import export_hf
from bert_jax.interop.pretrained import LAYOUTS, Pretrained, load_pretrained, restore_into

__all__ = ["LAYOUTS", "Pretrained", "export_hf", "load_pretrained", "restore_into"]
