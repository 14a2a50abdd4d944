"""The toy VLM: a LLaVA-1.5-architecture ``LlavaForConditionalGeneration`` whose vision tower is
the toy CLIP's image encoder (frozen), with a 2-layer MLP projector and a tiny Llama language
model over a word-level vocabulary, trained on the world's conversations.

Sequence layout (one conversation): ``render(question) + " " + answer + "</s>"`` where
``render`` is the processor's chat template with the generation prompt
(``USER: <image>\\n{question} ASSISTANT:``) and ``<image>`` expands to one token per patch
(16 for a 32x32 image with 8x8 patches; the CLS feature is dropped, "default" strategy).
Loss: token cross-entropy on the answer tokens and ``</s>`` only (labels -100 elsewhere),
computed by the model's own forward (``labels=``). Batches mix image conversations and
text-only knowledge conversations (``knowledge_fraction``).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from ..progress import bar as tqdm

from .training import optimizer_step, save_trained, warmup_cosine
from .vocab import EOS, IMAGE, build_tokenizer

# LLaVA-1.5 style: "USER: <image>\n{text} ASSISTANT: {answer}</s> USER: ..." (content may be a
# string or a list of {"type": "image"} / {"type": "text", "text": ...} parts; images first).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}{{ 'USER: ' }}"
    "{%- elif message['role'] == 'assistant' -%}{{ 'ASSISTANT: ' }}{%- endif -%}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}"
    "{%- for part in message['content'] if part['type'] == 'image' -%}{{ '<image>\n' }}{%- endfor -%}"
    "{%- for part in message['content'] if part['type'] == 'text' -%}{{ part['text'] }}{%- endfor -%}"
    "{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}{{ eos_token }}{%- endif -%}{{ ' ' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}"
)
CHAT_TEMPLATE_WORDS = "USER: ASSISTANT: " + EOS


@dataclass(frozen=True)
class VlmConfig:
    hidden: int = 128
    layers: int = 3
    heads: int = 4
    intermediate: int = 384
    max_len: int = 160  # positions of the language model
    vision_feature_layer: int = -2  # LLaVA-1.5: the penultimate vision layer
    steps: int = 600
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup: int = 60
    knowledge_fraction: float = 0.25  # share of each batch drawn from text-only conversations


def build_processor(tokenizer, clip_dir):
    """LlavaProcessor: the CLIP's image processor, our tokenizer, one ``<image>`` per patch."""
    from transformers import CLIPConfig, CLIPImageProcessor, LlavaProcessor

    return LlavaProcessor(image_processor=CLIPImageProcessor.from_pretrained(clip_dir), tokenizer=tokenizer,
                          patch_size=CLIPConfig.from_pretrained(clip_dir).vision_config.patch_size,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          chat_template=CHAT_TEMPLATE)


def build_vlm(clip_dir, tokenizer, cfg: VlmConfig, seed: int):
    """Fresh LLaVA with the CLIP's vision weights copied in (and frozen)."""
    from transformers import CLIPModel, GenerationConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    clip = CLIPModel.from_pretrained(clip_dir)
    torch.manual_seed(seed)
    text_config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=cfg.hidden, intermediate_size=cfg.intermediate,
                              num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
                              num_key_value_heads=cfg.heads, max_position_embeddings=cfg.max_len,
                              bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                              pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    n_patches = (clip.config.vision_config.image_size // clip.config.vision_config.patch_size) ** 2
    config = LlavaConfig(vision_config=clip.config.vision_config.to_dict(), text_config=text_config.to_dict(),
                         image_token_id=tokenizer.convert_tokens_to_ids(IMAGE), projector_hidden_act="gelu",
                         vision_feature_layer=cfg.vision_feature_layer, vision_feature_select_strategy="default",
                         image_seq_length=n_patches, tie_word_embeddings=True)
    model = LlavaForConditionalGeneration(config)
    model.model.vision_tower.load_state_dict(clip.vision_model.state_dict())  # both CLIPVisionModel
    model.model.vision_tower.requires_grad_(False)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    return model


def render_prompt(processor, question: str, image: bool) -> str:
    content = ([{"type": "image"}] if image else []) + [{"type": "text", "text": question}]
    return processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)


def tokenize_conversations(processor, conversations: list[dict], image_index: dict[str, int],
                           num_image_tokens: int) -> list[tuple[list[int], int, int]]:
    """-> per conversation (token ids, number of prompt tokens, image row or -1). The prompt's
    ``<image>`` is expanded to ``num_image_tokens`` copies, as the processor does."""
    tok = processor.tokenizer
    rendered: dict[tuple[str, bool], list[int]] = {}
    out = []
    for conv in conversations:
        question = conv["conversations"][0]["value"]
        has_image = "image" in conv
        key = (question, has_image)
        if key not in rendered:
            text = render_prompt(processor, question.replace(IMAGE + "\n", ""), has_image)
            rendered[key] = tok(text.replace(IMAGE, IMAGE * num_image_tokens))["input_ids"]
        prompt = rendered[key]
        answer = tok(" " + conv["conversations"][1]["value"], add_special_tokens=False)["input_ids"]
        out.append((prompt + answer + [tok.eos_token_id], len(prompt), image_index[conv["image"]] if has_image else -1))
    return out


def collate(seqs, pixels: torch.Tensor, pad_id: int):
    """Right-padded batch: input_ids/attention_mask/labels [B, L], pixel_values [n_img, 3, H, W]
    for the rows with an image, in row order (LLaVA fills image tokens in that order)."""
    width = max(len(s[0]) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    rows = []
    for r, (toks, n_prompt, img) in enumerate(seqs):
        ids[r, :len(toks)] = torch.tensor(toks)
        mask[r, :len(toks)] = 1
        labels[r, n_prompt:len(toks)] = ids[r, n_prompt:len(toks)]
        if img >= 0:
            rows.append(img)
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    if rows:
        batch["pixel_values"] = pixels[rows]
    return batch


def vocabulary_texts(*groups) -> list[str]:
    """Every string the tokenizer must know: conversation turns and any extra text lists."""
    texts = []
    for group in groups:
        for item in group:
            if isinstance(item, dict) and "conversations" in item:
                texts.extend(t["value"] for t in item["conversations"])
            else:
                texts.append(str(item))
    return texts


def train_vlm(clip_dir, images: list, image_paths: list[str], image_conversations: list[dict],
              knowledge: list[dict], extra_texts: list[str], out_dir, cfg: VlmConfig = VlmConfig(),
              seed: int = 0) -> dict:
    """Build the tokenizer/processor/model, train projector + language model, save to ``out_dir``.

    ``images`` (PIL) are the training images whose relative paths ``image_paths`` the
    conversations' ``image`` fields name. Returns training stats."""
    start = time.time()
    tokenizer = build_tokenizer(vocabulary_texts(image_conversations, knowledge, extra_texts, [CHAT_TEMPLATE_WORDS]),
                                image_token=True, add_eos=False, model_max_length=cfg.max_len)
    processor = build_processor(tokenizer, clip_dir)
    model = build_vlm(clip_dir, tokenizer, cfg, seed)
    pixels = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
    probe = processor(text=[render_prompt(processor, "x", True)], images=[images[0]], return_tensors="pt")
    n_img = int((probe["input_ids"][0] == model.config.image_token_id).sum())
    index = {p: i for i, p in enumerate(image_paths)}
    img_seqs = tokenize_conversations(processor, image_conversations, index, n_img)
    txt_seqs = tokenize_conversations(processor, knowledge, index, n_img)
    assert max(len(s[0]) for s in img_seqs + txt_seqs) <= cfg.max_len, "conversation longer than max_len"

    rng = np.random.default_rng([seed, 6])
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = warmup_cosine(opt, cfg.warmup, cfg.steps)
    n_txt = int(round(cfg.knowledge_fraction * cfg.batch_size))
    model.train()
    model.model.vision_tower.eval()
    losses = []
    for _ in tqdm(range(cfg.steps), desc="toy VLM", leave=False):
        batch = [img_seqs[i] for i in rng.integers(len(img_seqs), size=cfg.batch_size - n_txt)]
        batch += [txt_seqs[i] for i in rng.integers(len(txt_seqs), size=n_txt)]
        loss = model(**collate(batch, pixels, tokenizer.pad_token_id)).loss
        losses.append(optimizer_step(opt, sched, loss, clip_params=params))
    save_trained(model, processor, out_dir)
    return {"config": asdict(cfg), "final_loss": float(np.mean(losses[-50:])), "vocab_size": len(tokenizer),
            "image_tokens": n_img, "parameters": sum(p.numel() for p in model.parameters()),
            "trained_parameters": sum(p.numel() for p in params), "seconds": round(time.time() - start, 1)}

