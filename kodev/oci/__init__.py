"""OCI building blocks: references, platforms, deterministic layers, images, layout and tarball."""
