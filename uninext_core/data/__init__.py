"""Datasets: records, readers and writers for the real formats, transforms, clip and prompt sampling, synthetic world.

Formats (one module each): COCO instances (`coco`), RefCOCO refs (`refcoco`), YouTube-VIS (`ytvis`), COCO-video
(`cocovid`), Ref-YouTube-VOS expressions (`rvos`), MOTChallenge (`motchallenge`), LaSOT / GOT-10k (`sot`),
DAVIS / YouTube-VOS palette masks (`palette_masks`, `vos`). Every reader returns the plain records of `records` and
raises `DataFormatError` (a ValueError) naming the file and the record when the input is malformed.
"""
