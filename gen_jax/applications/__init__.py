"""Applications of trained models, each a library function that returns its numbers and writes a picture
(`python -m gen_jax.applications` is the command line over them): for autoencoders and VAEs, dimensionality
reduction, anomaly detection, denoising, generation, compression and the importance-weighted likelihood.
"""
from gen_jax.applications.autoencoders import (ANOMALY_SCORES, Trained, anomaly_detection, auroc, compression,
                                               denoise, generate, iwae, knn_cosine_distance, linear_probe,
                                               load_trained, pca_reconstruction_mse, reduce_dimensions,
                                               train_without)
