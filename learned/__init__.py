"""Equinox networks that learn the entropy-matching vector e_theta, and how to train them."""
