"""Command line: the composition root. Only this layer reads options, files and the environment."""
