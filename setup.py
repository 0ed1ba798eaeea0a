"""One distribution holding `transformer_jax` and `bert_jax`."""
import setuptools

setuptools.setup(
    name="transformer-bert-jax",
    version="0.1.0",
    description=("Attention Is All You Need and BERT in JAX/Flax: train, decode, pretrain, "
                 "fine-tune."),
    packages=setuptools.find_packages(include=["transformer_jax*", "bert_jax*", "configs*"]),
    python_requires=">=3.11",
    install_requires=[
        "jax>=0.10,<0.12",  # tested on 0.10, which has the threefry4x32 dropout RNG
        "flax>=0.11,<0.14",
        "optax>=0.2.6,<0.4",
        "orbax-checkpoint>=0.11,<0.13",
        "ml-collections>=1.0,<2",
        "numpy>=1.26",
        "tensorflow>=2.18,<2.23",
        "tensorflow-text>=2.18,<2.23",
        "tensorflow-datasets>=4.9,<5",
        "tensorboard>=2.18,<2.23",
        "sentencepiece>=0.2,<0.3",
        "sacrebleu>=2.4,<3",
        "matplotlib>=3.8,<4",
        "safetensors>=0.4,<1",
        "scikit-learn>=1.3,<2",
        "scipy>=1.10,<2",
    ],
    entry_points={"console_scripts": [
        "transformer-train=transformer_jax.main:cli",
        "transformer-bench=transformer_jax.bench:cli",
        "bert-pretrain=bert_jax.main:cli",
        "bert-bench=bert_jax.bench:cli",
    ]},
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3.5"],
        "gpu": ["jax[cuda12]"],
        "tpu": ["jax[tpu]"],
        # Only for `bert-bench` to time Hugging Face's PyTorch BERT beside ours.
        "bench": ["torch>=2.2", "transformers>=4.40"],
    },
)
