"""The offline demo model: a procedural shapes dataset and the script that trains a small SD1.x
checkpoint on it (engine layer: no app, UI or settings imports)."""
