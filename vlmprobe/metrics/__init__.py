"""Metrics shared by every method: pure functions on numpy arrays (no model imports).

validate     input checks -> one-line VlmprobeError (shapes, class range, NaN/inf)
accuracy     top-1, top-k, per-class accuracy, mean per-class recall, worst-k, confusions
margin       class-wise matching margin (CMM), pseudo-label variant
calibration  softmax, ECE (15 bins, stated edge convention), NLL, Brier, temperature scaling
ood          MSP, MCM, energy, max-logit, entropy, AUROC, FPR@95TPR, ROC curve, mean over OOD sets
corruption   ImageNet-C CE, mCE, relative mCE (AlexNet constants with their source)
robustness   effective robustness (logit/probit fit), Clopper-Pearson, Huber line + Spearman + R^2
testbed      published tables (imagenet-testbed layout) -> per-model CE/mCE, shift accuracies, ER vs its baseline models
shifts       the results.json `shift` block (200-way/1000-way, ObjectNet label sets, per corruption), ID->shift pairs
model_scatter  "one point per model" figures (probit axes, y = x, Huber line, baseline fit; small multiples)
groups       accuracy per value of a sample field, drop between two groups, error ratio
frequency    class-name mention counting in a corpus, correlation with per-class accuracy
correlation  Spearman / Pearson over finite pairs
shape_bias   shape vs texture decisions on cue-conflict images (Geirhos et al.)
shape_bias_plot  the per-category shape-bias dot plot of several runs (`vlmprobe compare --shape-bias`)
retrieval    image<->text ranks (ties pessimistic) and Recall@K from an image x caption score matrix
plots        reliability diagram, ROC, frequency scatter (PNG)
rundata      read a run directory into arrays
report       summarize(...) -> results dict (used by `vlmprobe eval`), results_from_run(RUN_DIR)
"""
