"""The UNINEXT network (reference §1-§5): backbones, prompt encoders, Bi-XAtt fusion, deformable transformer, heads."""
