"""Tiny random-weight stand-ins for every network ITEM uses, built locally and saved with `save_pretrained`.

They have the real architectures and the real loading code paths (`from_pretrained` on a folder), at a size
that builds in well under a second, so that tests and the offline demo never touch the network. Their
outputs mean nothing.
"""

import json
import os
from pathlib import Path

import torch

from transformers import (
    BertTokenizer,
    BlipConfig,
    BlipForConditionalGeneration,
    BlipImageProcessor,
    BlipProcessor,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPTokenizer,
    GroundingDinoConfig,
    GroundingDinoForObjectDetection,
    GroundingDinoImageProcessor,
    GroundingDinoProcessor,
    MetaClip2Config,
    MetaClip2Model,
    Owlv2Config,
    Owlv2ForObjectDetection,
    Owlv2ImageProcessor,
    Owlv2Processor,
    Siglip2Config,
    Siglip2ImageProcessor,
    Siglip2Model,
    SwinConfig,
)

# Words the tiny tokenizers know as whole tokens; anything else falls back to characters (CLIP) or [UNK].
WORDS = (
    "a an the of on in with and at to is man woman dog cat bike bicycle road street tree car person "
    "riding red busy down front sitting table cup coffee rocket astronaut cake flag picture photo"
).split()
BACKBONES = ("clip", "siglip2", "metaclip_2")
DETECTORS = ("grounding-dino", "owlv2")


def _byte_chars() -> list[str]:
    """The 256 printable stand-ins for bytes that byte-level BPE vocabularies (CLIP's) use."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(code) for code in codes]


def tiny_clip_tokenizer(model_max_length: int = 77) -> CLIPTokenizer:
    """A byte-level BPE tokenizer in CLIP's format with whole-word merges for `WORDS`."""
    chars = _byte_chars()
    vocab_list = chars + [c + "</w>" for c in chars]
    merges = []
    for word in WORDS:
        # Merge left to right: "m a n</w>" -> "ma n</w>" -> "man</w>".
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            merges.append((pieces[0], pieces[1]))
            pieces = [pieces[0] + pieces[1]] + pieces[2:]
            if pieces[0] not in vocab_list:
                vocab_list.append(pieces[0])
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(vocab_list))}
    merges = list(dict.fromkeys(merges))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def tiny_bert_tokenizer() -> BertTokenizer:
    """A WordPiece tokenizer in BERT's format (BLIP and Grounding DINO use BERT tokenizers)."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", ".", ",", "-"] + WORDS + letters + ["##" + c for c in letters]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    return BertTokenizer(vocab=vocab, do_lower_case=True)


def _save(folder: Path, model, processor) -> str:
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)


def _text_tower(tokenizer, max_positions: int) -> dict:
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def tiny_backbone(folder: str | os.PathLike, family: str = "clip", seed: int = 0) -> str:
    """Save a tiny random dual encoder of `family` (clip, siglip2 or metaclip_2) with its processor parts."""
    folder = Path(folder)
    torch.manual_seed(seed)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, patch_size=8)
    if family in ("clip", "metaclip_2"):
        tokenizer = tiny_clip_tokenizer(77)
        config_class, model_class = (CLIPConfig, CLIPModel) if family == "clip" else (MetaClip2Config, MetaClip2Model)
        config = config_class(
            text_config=_text_tower(tokenizer, 77), vision_config=dict(vision, image_size=32), projection_dim=24
        )
        image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    elif family == "siglip2":
        tokenizer = tiny_clip_tokenizer(64)
        config = Siglip2Config(text_config=_text_tower(tokenizer, 64), vision_config=dict(vision, num_patches=16))
        config.text_config.projection_size = config.vision_config.hidden_size
        model_class = Siglip2Model
        image_processor = Siglip2ImageProcessor(patch_size=8, max_num_patches=16)
    else:
        raise ValueError(f"Unknown tiny backbone family {family!r}; choose one of {BACKBONES}.")
    model = model_class(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    image_processor.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def tiny_captioner(folder: str | os.PathLike, seed: int = 0) -> str:
    """Save a tiny random BLIP captioner and its processor."""
    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = tiny_bert_tokenizer()
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        encoder_hidden_size=32,
        bos_token_id=tokenizer.convert_tokens_to_ids("[DEC]"),
        pad_token_id=tokenizer.pad_token_id,
        sep_token_id=tokenizer.sep_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8)
    config = BlipConfig(text_config=text, vision_config=vision, projection_dim=24)
    model = BlipForConditionalGeneration(config).eval()
    # Random weights would mostly emit word pieces or stop at once; bias the output layer towards whole
    # words so that the tiny captions name things spaCy can find (still random, still meaningless).
    with torch.no_grad():
        bias = model.text_decoder.cls.predictions.bias
        bias.fill_(-10.0)
        bias[tokenizer.convert_tokens_to_ids(WORDS)] = 0.0
    model.generation_config.max_new_tokens = 12
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
    return _save(folder, model, BlipProcessor(image_processor=image_processor, tokenizer=tokenizer))


def tiny_detector(folder: str | os.PathLike, family: str = "grounding-dino", seed: int = 0) -> str:
    """Save a tiny random open-vocabulary detector (grounding-dino or owlv2) and its processor."""
    folder = Path(folder)
    torch.manual_seed(seed)
    if family == "grounding-dino":
        tokenizer = tiny_bert_tokenizer()
        config = GroundingDinoConfig(
            backbone_config=SwinConfig(
                embed_dim=8, depths=[1, 1], num_heads=[1, 1], window_size=2, image_size=32, out_features=["stage1", "stage2"]
            ),
            text_config=dict(
                vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
            ),
            d_model=32,
            encoder_layers=1,
            decoder_layers=2,  # one layer fails Grounding DINO's weight-tying check
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            num_queries=10,
            num_feature_levels=2,
            encoder_n_points=2,
            decoder_n_points=2,
            max_text_len=64,
            fusion_dropout=0.0,
        )
        model = GroundingDinoForObjectDetection(config).eval()
        image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 32, "longest_edge": 64})
        processor = GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)
    elif family == "owlv2":
        tokenizer = tiny_clip_tokenizer(16)
        config = Owlv2Config(
            text_config=_text_tower(tokenizer, 16),
            vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8),
            projection_dim=32,  # OWLv2's class head needs the text width here, as in the real models
        )
        model = Owlv2ForObjectDetection(config).eval()
        with torch.no_grad():  # random box deltas give degenerate boxes; zero them to keep the prior boxes
            model.box_head.dense2.weight.zero_()
            model.box_head.dense2.bias.zero_()
        image_processor = Owlv2ImageProcessor(size={"height": 32, "width": 32})
        processor = Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer)
    else:
        raise ValueError(f"Unknown tiny detector family {family!r}; choose one of {DETECTORS}.")
    return _save(folder, model, processor)


def tiny_components(folder: str | os.PathLike, backbone: str = "clip", detector: str = "grounding-dino") -> dict[str, str]:
    """Build all three tiny networks under `folder`; returns the paths `item build` takes."""
    folder = Path(folder)
    return {
        "backbone": tiny_backbone(folder / f"backbone-{backbone}", backbone),
        "captioner": tiny_captioner(folder / "captioner"),
        "detector": tiny_detector(folder / f"detector-{detector}", detector),
    }


if __name__ == "__main__":  # pragma: no cover - manual inspection
    import sys

    print(json.dumps(tiny_components(sys.argv[1]), indent=2))
