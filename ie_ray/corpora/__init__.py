"""Input corpora whose information emergence is measured (PAPER.md section 3)."""

from ie_ray.corpora.icl import ICL_TASKS, IclCorpus, build_icl_corpus

__all__ = ["ICL_TASKS", "IclCorpus", "build_icl_corpus"]
