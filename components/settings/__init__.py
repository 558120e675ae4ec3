"""The settings wing: the stack's config, typed and checked, one module per section."""
