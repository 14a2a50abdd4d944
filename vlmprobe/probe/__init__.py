"""Linear probes on cached hidden-state features (VLM layers x poolings, CLIP embeddings).

- ``extract``: features of a dataset, cached on disk under a content key, resumable;
- ``linear``: multinomial logistic regression (torch L-BFGS; scikit-learn cross-check),
  C chosen on validation;
- ``layers``: the per-feature protocol (select on validation, test once, shared metrics);
- ``runner``: ``run_probe`` writes a run directory (``vlmprobe probe``); ``plot``: its PNG.
"""
from .extract import FeatureSet, extract_features
from .layers import ProbeReport, probe_features
from .linear import DEFAULT_CS, LinearProbe, carve_validation, fit_probe, select_probe
from .runner import parse_data_spec, run_probe

__all__ = ["DEFAULT_CS", "FeatureSet", "LinearProbe", "ProbeReport", "carve_validation", "extract_features",
           "fit_probe", "parse_data_spec", "probe_features", "run_probe", "select_probe"]
