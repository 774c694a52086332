"""Dataset manifests, prediction files and image loaders."""
