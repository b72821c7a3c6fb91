"""Code that runs under a layer's own Python (shipped into layers or run by path): standard library only, no venvlayers imports."""
