"""What each trained model family is for, as pure functions of (module, params, arrays, key):
`vae` and `autoencoder` (code, decode, reconstruct, anomaly_score, sampling, IWAE), `gan` (sampling, EMA,
discriminator scores, the generator's noise) and `translation` (CycleGAN's and pix2pix's translations).
The applications built on them live in `gen_jax.applications`.
"""
