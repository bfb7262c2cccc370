"""Evaluation: metrics as the field reports them, per-generator evaluation under perturbations, its report."""
