"""Evaluation: metrics as the field reports them, per-set evaluation under perturbations and its report (tables,
HTML with a gallery of mistakes), and head ablations on cached features."""
