"""Networks LayerDiffusion adds to a diffusers base.

The transparent VAE and its codec, UNet patches, SD1.5 attention sharing, key maps, RGB
padding. Imports nothing else from the engine.
"""
