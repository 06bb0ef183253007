"""Tamper evidence: the per-tenant hash chain over the store (chain, verify) and Ed25519
signatures on decision packs (keys, signing)."""
