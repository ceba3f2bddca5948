"""The OAuth 2.1 authorization server and the access-token verifier, built on authlib's grant classes."""
