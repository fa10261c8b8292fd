"""Qt widgets of the Acetate docker (no logic: they bind to the model)."""
