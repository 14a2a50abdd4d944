"""Fine-tuning on instruction-formatted classification data (the paper's recipe) and the
fine-tuned CLIP baseline.

Modules: ``config`` (dataclasses, YAML + CLI overrides), ``data`` (conversations in the paper's
format, instruction-data mixing), ``collate`` (chat-template rendering, answer-only labels),
``lora`` (LoRA / QLoRA / projector trainable sets), ``tasks`` (VLM vs CLIP: model, loss, saving),
``train`` (the accelerate loop: accumulation, schedule, eval, resumable checkpoints),
``merge`` (fold an adapter into its base). Entry point: ``recipes/finetune.py``.
"""
