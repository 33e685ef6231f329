"""The small library behind the lessons of the multi-modal networks course; CONTRIBUTING.md has
the tour of its modules."""

__version__ = "0.1.0"

# the GitHub repository of the Colab/Binder badges and the Colab setup cell
COURSE_REPO = "multimodal-course/multimodal-networks"
