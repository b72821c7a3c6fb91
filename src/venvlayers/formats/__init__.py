"""The on-disk contract between publish, merge, release and deploy: models, metadata layout, asset names."""
