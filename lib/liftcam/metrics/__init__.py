"""How good is an explanation: faithfulness, localisation, agreement, and the statistics to read them (docs/paper.md, protocols).

Every metric returns one value per image, a float tensor (B,) on the CPU; :func:`summarize` turns
such a vector into a mean with a seeded bootstrap confidence interval. One module per concept:

- :mod:`~liftcam.metrics.faithfulness`: AD, IC, ADD, deletion and insertion, and all at once; ROAD;
- :mod:`~liftcam.metrics.localisation`: the energy-based pointing game;
- :mod:`~liftcam.metrics.agreement`: cosine, Spearman and top-k agreement of coefficient vectors;
- :mod:`~liftcam.metrics.statistics`: bootstrap summaries (also by cluster), paired comparisons, Holm;
- :mod:`~liftcam.metrics.sanity`: the cascading model-randomisation check (Adebayo et al. 2018).

Inputs shared by the faithfulness metrics:

- ``model``: any callable mapping images (N, 3, H, W) to logits (N, C). A :class:`SplitModel`
  normalises inside, so perturbations act on pixels. The model runs under ``torch.no_grad``, in
  eval mode (each submodule's flag is restored afterwards), on its device when it is an
  ``nn.Module`` with parameters (images and maps are moved there, and cast to its float dtype).
- ``images``: (B, 3, H, W) floats in [0, 1] pixel space.
- ``maps``: (B, H, W) explanation maps in [0, 1] at the image resolution.
- ``targets``: (B,) long tensor or sequence of ints (an int means that class for every image).
- ``Y``: softmax probability of the target on the image; every score below is a softmax
  probability, never a logit.

    >>> import torch
    >>> def model(x):                        # p(class 0) = mean pixel value, exactly
    ...     m = x.mean((1, 2, 3))
    ...     return torch.stack([m.log(), (1 - m).log()], 1)
    >>> images = torch.full((1, 3, 2, 2), 0.5)
    >>> maps = torch.tensor([[[1.0, 0.5], [0.5, 0.0]]])
    >>> average_drop(model, images, maps, [0])           # Y = 0.5, O = 0.5 * mean(map) = 0.25
    tensor([50.])
    >>> summarize(torch.tensor([1.0, 2.0, float("nan")]))["n_nan"]
    1
"""
from .agreement import (
                           AGREEMENT,
                           agreement_per_image,
                           cosine_similarity,
                           count_empty_maps,
                           reference_error,
                           relative_error,
                           spearman,
                           top_k_overlap,
)
from .checks import TOLERANCE
from .faithfulness import (  # noqa: F401
                           DEFAULT_BATCH_SIZE,
                           HIGHER_IS_BETTER,
                           Curves,
                           _gaussian_blur,
                           average_drop,
                           average_drop_in_deletion,
                           deletion,
                           faithfulness,
                           increase_in_confidence,
                           insertion,
                           noisy_linear_imputation,
                           road,
                           step_sensitivity,
)
from .localisation import energy_pointing_game
from .sanity import map_similarity, model_randomisation, randomisation_stages, randomised, sanity_summary
from .statistics import (
                           MIN_CLUSTERS,
                           MIN_N,
                           clusters_needed,
                           compare,
                           compare_family,
                           decide,
                           holm,
                           sign_flip_test,
                           smallest_p,
                           summarize,
                           tied_by_maps,
)

__all__ = [
    "Curves", "average_drop", "increase_in_confidence", "average_drop_in_deletion", "deletion",
    "insertion", "energy_pointing_game", "cosine_similarity", "relative_error", "agreement_per_image",
    "reference_error", "count_empty_maps", "AGREEMENT", "spearman", "top_k_overlap", "summarize",
    "faithfulness", "step_sensitivity", "HIGHER_IS_BETTER", "compare", "compare_family", "MIN_N", "MIN_CLUSTERS", "holm",
    "sign_flip_test", "smallest_p", "clusters_needed", "decide", "tied_by_maps",
    "TOLERANCE", "DEFAULT_BATCH_SIZE", "road", "noisy_linear_imputation",
    "model_randomisation", "randomisation_stages", "randomised", "map_similarity", "sanity_summary",
]
