"""Other ecosystems' formats: Sigstore bundles and Rekor v1 entries."""
