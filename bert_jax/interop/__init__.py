"""Pretrained BERT weights in and out: Google's TF checkpoints, Hugging Face directories
(safetensors or pytorch_model.bin, read without torch) and our own training workdirs.

  pretrained = load_pretrained("uncased_L-12_H-768_A-12")    # or an HF dir, or a workdir
  params, missing = restore_into(pretrained, fresh_params)  # fresh_params: our init tree
  export_hf("out_dir", pretrained.config, pretrained.params, pretrained.vocab_file)

``python -m bert_jax.convert`` wraps the last line for the command line.

Initialising a sharded train state (params are never materialised on one device): restore
into the *abstract* params, then place each array straight into its sharding and take the
fresh init only where the checkpoint has nothing (task heads, a BertModel file's MLM/NSP):

  restored, missing = restore_into(pretrained, abstract_state.params)  # numpy | ShapeDtypeStruct
  params = jax.tree.map(
      lambda r, fresh, s: fresh if isinstance(r, jax.ShapeDtypeStruct)
      else jax.make_array_from_callback(r.shape, s, lambda index: r[index]),
      restored, fresh_state.params, shardings.params)
"""

from bert_jax.interop.hf import export_hf
from bert_jax.interop.pretrained import LAYOUTS, Pretrained, load_pretrained, restore_into

__all__ = ["LAYOUTS", "Pretrained", "export_hf", "load_pretrained", "restore_into"]
