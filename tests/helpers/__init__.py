"""Helpers shared by test modules (a test module never imports another: pytest may collect
them in any order, and a test file is no library)."""
