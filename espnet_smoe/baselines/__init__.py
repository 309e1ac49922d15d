"""Baselines the S-MoE method is compared with; the method itself does not import them.

``gated_moe``: a conventional learned-gate (top-1) mixture of experts, registered as
``gated_moe_conformer`` / ``gated_moe_transformer`` by espnet_smoe/registration.py.
"""
