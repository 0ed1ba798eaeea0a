"""Times Hugging Face's PyTorch ``BertForPreTraining`` train step, for ``bert_jax.bench``.

Runs as its own process (``python -m bert_jax.bench_hf SPEC.json BATCH.npz``): torch and
TensorFlow loaded into one process can crash (they ship clashing native libraries), and a
separate process also keeps the two frameworks' thread pools from competing. Needs torch and
transformers (the optional ``bench`` extra); never a runtime dependency.

The step is what HF users run: forward with MLM labels (-100 off the masked positions) and
the NSP label, backward, gradient clipping at 1.0 and ``torch.optim.AdamW``, in train mode
(dropout on), on the same synthetic batch.
"""

import json
import os
import sys
import time

import numpy as np
import torch
import transformers


def hf_model(cfg: dict) -> "transformers.BertForPreTraining":
    """``cfg``: the fields of our BertConfig."""
    hf_config = transformers.BertConfig(
        vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"],
        num_hidden_layers=cfg["num_layers"], num_attention_heads=cfg["num_heads"],
        intermediate_size=cfg["intermediate_size"], hidden_act="gelu",
        hidden_dropout_prob=cfg["hidden_dropout"],
        attention_probs_dropout_prob=cfg["attention_dropout"],
        max_position_embeddings=cfg["max_position_embeddings"],
        type_vocab_size=cfg["type_vocab_size"], layer_norm_eps=cfg["layer_norm_eps"])
    return transformers.BertForPreTraining(hf_config)


def torch_batch(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Our batch in HF's argument names; labels [B, L] are -100 except at masked positions."""
    labels = np.full(batch["input_ids"].shape, -100, np.int64)
    np.put_along_axis(labels, batch["masked_lm_positions"].astype(np.int64),
                      batch["masked_lm_ids"].astype(np.int64), axis=1)
    return {"input_ids": torch.from_numpy(batch["input_ids"].astype(np.int64)),
            "attention_mask": torch.from_numpy(batch["input_mask"].astype(np.int64)),
            "token_type_ids": torch.from_numpy(batch["segment_ids"].astype(np.int64)),
            "labels": torch.from_numpy(labels),
            "next_sentence_label": torch.from_numpy(
                batch["next_sentence_labels"].astype(np.int64))}


def step_times(cfg: dict, opt: dict, batch: dict[str, np.ndarray], steps: int,
               warmup: int) -> list[float]:
    """Seconds of each timed train step; ``opt``: learning_rate, b1, b2, eps, weight_decay."""
    torch.set_num_threads(os.cpu_count() or 1)  # XLA's CPU client uses every core too
    torch.manual_seed(0)
    model = hf_model(cfg).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=opt["learning_rate"],
                                  betas=(opt["b1"], opt["b2"]), eps=opt["eps"],
                                  weight_decay=opt["weight_decay"])
    inputs = torch_batch(batch)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg["dtype"] == "bfloat16")

    def one_step():
        with autocast:
            loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        one_step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        one_step()
        times.append(time.perf_counter() - start)
    return times


if __name__ == "__main__":
    from transformer_jax import host_memory

    # The malloc our side runs with (torch also allocates its big tensors with
    # posix_memalign), so the ratio compares the frameworks, not the allocators.
    print(host_memory.tune_for_xla_cpu(), file=sys.stderr)
    spec_path, batch_path = sys.argv[1:3]
    with open(spec_path) as f:
        spec = json.load(f)
    with np.load(batch_path) as data:
        arrays = dict(data)
    times = step_times(spec["model"], spec["optimizer"], arrays, spec["steps"], spec["warmup"])
    print(json.dumps({"step_times_s": times}))
