"""The model: backbones (ViT, CNN, BERT), the rationale model (generator + predictor), its masks and
losses, and building one from a config or a run's checkpoint (runmodel.py)."""
