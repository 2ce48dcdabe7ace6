"""Sparse autoencoder: the seed's KL sparsity penalty on a sigmoid code (target 0.05, weight 0.1).

The penalty acts on the mean activation over the global batch, clipped so it stays finite at 0 and 1; the
achieved mean activation is logged as `mean_activation` (train) and `eval/mean_activation` beside the target.
On MNIST: python train.py --config=configs/sparse_ae.py --config.data.source=idx:../shared/data/mnist
"""
from configs import ae


def get_config():
    config = ae.get_config()
    config.model.code_activation = "sigmoid"
    config.loss.sparsity = "kl"
    config.loss.sparsity_target = 0.05
    config.loss.sparsity_weight = 0.1
    return config
