"""Publishing built layers: staged deployed views, archives, metadata, SBOMs, local export."""
