"""Shapes: a tiny Stable-Diffusion-shaped text-to-image model trained on a synthetic world.

The world (`world`), its analytic reward (`detector`), the networks (`nets`, `model`), base
training (`train_base`), B²-DiffuRL/DDPO tuning (`rl`), Time-Shift measurement (`timeshift`),
export (`export`) and the model card (`card`). `python -m shapes` runs the whole recipe.
"""
