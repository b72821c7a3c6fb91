"""Several platforms' outputs merged and checked, and GitHub releases created from them."""
