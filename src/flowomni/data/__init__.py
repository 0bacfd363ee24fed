"""Corpora: the synthetic spoken-QA builder, manifests, loaders for real data, feature cache."""
