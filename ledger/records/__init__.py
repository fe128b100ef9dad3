"""Records: DSSE envelopes, in-toto statements, signer keys and the leaf encoding."""
