# %% [markdown] id="title"
# # 00 · Setup check
#
# This notebook checks that your machine can run the course, and shows the one object every
# lesson uses: a CLIP model that turns images and texts into vectors you can compare.
# It needs no internet; on 2 CPU cores it ran in {{claim timings.00-setup.wall_seconds:.0f}} seconds, kernel start included.

# %% id="params" tags=["parameters"]
LANG = "en"        # course language: en, fr, es, it, pt, zh
MODEL = "auto"     # "auto": ViT-B-32 if already downloaded, else "tiny-shapes"; "ViT-B-32": download it once
QUICK = True       # True: fast, offline (what CI runs); False: the full experiments

# %% id="imports"
import utils
from utils.i18n import number, set_language, t

set_language(LANG)

# %% [markdown] id="pre-quiz"
# **Before you start:** a short quiz on what you may already know. Guess freely: every
# answer explains itself, and the quiz at the end shows what you learned.

# %% id="pre-quiz-show"
from utils.quiz import show

show("00-setup", "pre", LANG)

# %% [markdown] id="doctor-intro"
# ## What this machine can run
#
# The course has two worlds that share one API:
#
# - the **pretrained world**: real CLIP weights (`ViT-B-32` trained on LAION-2B) and real photos.
#   It needs the weights, downloaded once ({{claim model-size.ViT-B-32.float32_mb:.0f}} MB).
# - the **shapes world**: pictures of coloured shapes and tiny models trained on them. It ships
#   with the course, works offline, and you can retrain every model yourself on a laptop.
#
# The report below says which worlds are available here and what to do if something is missing.
# The same report is printed in a terminal by `python -m utils doctor`.

# %% id="doctor"
from utils.doctor import diagnose, format_report

report = diagnose()
print(format_report(report))

# %% [markdown] id="load-intro"
# ## One object for every lesson
#
# `load_clip` returns the model together with what is needed to use it: its image
# preprocessing, its tokenizer and a one-line description of what was loaded. With
# `MODEL = "auto"` you get the pretrained model when its weights are here, and the tiny
# shapes-world model otherwise.

# %% id="load"
from utils.models import load_clip

clip = load_clip(MODEL)
print(clip.description)

# %% [markdown] id="embed-intro"
# ## Images and texts become vectors
#
# `encode_images` and `encode_texts` return **L2-normalised** embeddings: every vector has
# length 1, so the dot product of an image vector and a text vector is their cosine
# similarity, a number between -1 and 1. The right caption should score highest.

# %% id="embed"
import textwrap

from utils.data import sample_images
from utils.viz import show_images

pairs = sample_images(4, seed=0)
images = [im for im, _ in pairs]
captions = [cap for _, cap in pairs]
similarity = clip.encode_images(images) @ clip.encode_texts(captions).T  # (4 images, 4 texts)

best = similarity.argmax(dim=1).tolist()  # the caption each image matches best
titles = [t("best caption:") + f"\n{textwrap.fill(captions[j], 26)}\n({number(similarity[i, j], '.2f')})"
          for i, j in enumerate(best)]  # long captions on two lines, not over the next one
show_images(images, titles, t("Each image and the caption it matches best"), size=2.5)

# %% [markdown] id="self-check-intro"
# ## Self-check
#
# These assertions fail if the setup is broken: the embeddings must have length 1, and the
# model must match at least three of the four images with their own captions.

# %% id="self-check"
import torch

image_vectors = clip.encode_images(images)
assert torch.allclose(image_vectors.norm(dim=-1), torch.ones(len(images)), atol=1e-4), \
    "embeddings are not L2-normalised"
matches = int((similarity.argmax(dim=1) == torch.arange(len(images))).sum())
if clip.is_tiny:
    assert matches >= 3, f"the tiny model matched only {matches}/4 images to their captions"
print(t("Setup OK:"), clip.description)

# %% [markdown] id="overview-quiz"
# ## Before the lesson
#
# Your setup works. The lesson's own pre-lecture quiz asks what you may already know about
# the whole lesson; the notebooks that follow answer it.

# %% id="overview-quiz-show"
from utils.quiz import show

show("overview", "pre", LANG)

# %% [markdown] id="quiz"
# ## Quiz
#
# A few questions on what this setup showed: the two worlds and what an embedding is.

# %% id="quiz-show"
from utils.quiz import show

show("00-setup", "post", LANG)
