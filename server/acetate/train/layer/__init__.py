"""Fine-tuning the transparent layer model on captioned RGBA images (arXiv 2402.17113 §3.2).

`captions`: captioned folders, aspect-ratio buckets and seeded step-indexed batches; `adapters`:
the trainable parts (SDXL: a peft LoRA on the attention projections the official attention file
patches; SD1.5: Acetate's attention-sharing units) with their official-format exports;
`latents`: RGBA → latent transparency latents; `config`: the flags; `loop`: the `accelerate`
training loop; `samples`: validation images through Acetate's own `fg` pipeline.
"""
