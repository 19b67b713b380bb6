"""Network definitions, the model bundle format and the shipped trained model."""
