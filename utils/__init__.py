"""Helpers for the multi-modal networks course.

Each module backs one lesson; students are meant to read them:
`models` (loading CLIP), `data` (the shapes world), `losses` (the contrastive loss),
`zeroshot`, `retrieval`, `generate`, `dalle`, `quiz`, `i18n`.
"""

__version__ = "0.1.0"

# Where the course lives on GitHub: used by the Colab/Binder badges and the Colab setup cell.
COURSE_REPO = "multimodal-course/multimodal-networks"
