"""Benchmarks comparing gen_jax with reference implementations (torch_seed: the seed tutorial in PyTorch)."""
