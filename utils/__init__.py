"""Helpers for the multi-modal networks course.

Each module backs one lesson; students are meant to read them (CONTRIBUTING.md has the tour):
`models` (loading CLIP), `data` (the shapes world), `losses` (the contrastive loss),
`tinyclip`, `train` (one `fit()`), `zeroshot`, `retrieval` and `index_cache`, `generate` with
`drawers`, `cutouts`, `objective` and `prompts`, `vqgan`, `dalle` and `unclip`, `viz` (every
plot and grid), `io` (checkpoints, atomic writes), `quiz`, `i18n`; `cli` is the command line.
"""

__version__ = "0.1.0"

# Where the course lives on GitHub: used by the Colab/Binder badges and the Colab setup cell.
COURSE_REPO = "multimodal-course/multimodal-networks"
