"""Datasets: records, readers and writers for the real formats, transforms, clip and prompt sampling, synthetic world.

Formats (one module each): COCO instances (`coco`), RefCOCO refs (`refcoco`), YouTube-VIS (`ytvis`), COCO-video
(`cocovid`), Ref-YouTube-VOS expressions (`rvos`), MOTChallenge (`motchallenge`), LaSOT / GOT-10k (`sot`),
palette PNG masks (`palette_masks`) and the DAVIS / YouTube-VOS layouts (`vos`). Every reader returns the plain
records of `records` and raises `errors.DataFormatError` (a ValueError) naming the file and the record when the
input is malformed.

Training side: `targets` (records → per-frame arrays), `samples` (image + target from disk), `transforms`
(clip-consistent augmentation), `clips` (two-frame clips, pseudo-videos), `sampler` (multi-dataset ratios),
`prompt_sampling` (category lists under the token budget, expressions, templates). `synthetic/` generates data for
every task and writes it through the writers above.
"""
