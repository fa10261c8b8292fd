"""Training and evaluating the latent transparency encoder/decoder (arXiv 2402.17113 §3).

`synth`: deterministic synthetic RGBA images; `data`: RGBA folders → seeded, step-indexed
batches; `base_vae`: the frozen SD VAE of a base; `losses`: the paper's joint objective and
the LDM-style PatchGAN; `state`: official-layout exports with metadata and exact resume state
(safetensors only); `loop`: the `accelerate` training loop; `evaluate`: metrics and reports.
"""
