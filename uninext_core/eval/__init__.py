"""Metrics for every UNINEXT task family, model-independent and numpy-based.

coco_ap      COCO box/mask AP through pycocotools, plus precision-recall curves
rec          REC accuracy (P@0.5) and RES overall / mean IoU
sot          SOT one-pass evaluation: success AUC, precision @20 px, normalised precision
davis        DAVIS J (region IoU), F (boundary F-measure), J&F with mean / recall / decay
mot          CLEAR MOT and IDF1 through motmetrics with our own IoU distances (boxes or masks)
hota         HOTA / DetA / AssA / LocA
overlaps     pairwise box and mask IoU shared by the metrics and the trackers
track_frames per-frame track records read by mot and hota
"""
