"""Classifier-free guidance for the joint Gaussian (Eq. 59). Owned by the CFG work; placeholder until it lands."""

from __future__ import annotations


def cfg_sample(joint, y, w, *, key, **options):
    raise NotImplementedError("cfg_sample is being written (gaussian_oracle/_cfg.py).")


def cfg_mutual_information(joint, w, s_end=1e-3, **options):
    raise NotImplementedError("cfg_mutual_information is being written (gaussian_oracle/_cfg.py).")
