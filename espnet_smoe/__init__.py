"""S-MoE for ESPnet2 (placeholder while the core is written)."""
