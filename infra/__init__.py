"""CDK infrastructure of the BYOM Gateway."""
