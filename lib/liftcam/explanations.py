"""The former name of :mod:`liftcam.explaining` (renamed: it clashed with the ``Explanation`` type).

Kept so that ``liftcam.explanations.explain_all`` and friends go on working.
"""
from .explaining import NOT_IN_KEY, VERSION, cache_folder, explain_all, explain_cached, to_npz  # noqa: F401

__all__ = ["explain_cached", "explain_all", "to_npz", "cache_folder", "VERSION", "NOT_IN_KEY"]
