"""Procedural world of shapes for every task, written through the real-format writers.

`python -m uninext_core.data.synthetic --out DIR --task detection ...` (see `__main__`); `export.export_world` from
code; `world.synth_image` / `world.synth_video` for single items; `expressions.resolve_expression` to check that an
expression names exactly one object.
"""
