"""Go toolchain integration: building main packages and describing what went into them."""
