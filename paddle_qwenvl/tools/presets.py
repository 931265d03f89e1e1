"""Published sizes of every supported model, for building random checkpoints of real size.

Only shapes are kept here; any checkpoint's own config.json remains the source of truth.
"""
_VIT2 = dict(depth=32, embed_dim=1280, num_heads=16, mlp_ratio=4)
_VIT25 = dict(depth=32, hidden_size=1280, num_heads=16, window_size=112,
              fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2)


def _text(hidden, inter, layers, heads, kv, vocab, tie):
    return dict(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=kv, vocab_size=vocab,
                tie_word_embeddings=tie)


PRESETS = {
    "qwen2-vl-2b": ("qwen2_vl", _text(1536, 8960, 28, 12, 2, 151936, True), _VIT2),
    "qwen2-vl-7b": ("qwen2_vl", _text(3584, 18944, 28, 28, 4, 152064, False), _VIT2),
    "qwen2-vl-72b": ("qwen2_vl", _text(8192, 29568, 80, 64, 8, 152064, False), _VIT2),
    "qvq-72b-preview": ("qwen2_vl", _text(8192, 29568, 80, 64, 8, 152064, False), _VIT2),
    "qwen2.5-vl-3b": ("qwen2_5_vl", _text(2048, 11008, 36, 16, 2, 151936, True),
                      dict(_VIT25, intermediate_size=3420)),
    "qwen2.5-vl-7b": ("qwen2_5_vl", _text(3584, 18944, 28, 28, 4, 152064, False),
                      dict(_VIT25, intermediate_size=3420)),
    "qwen2.5-vl-32b": ("qwen2_5_vl", _text(5120, 27648, 64, 40, 8, 152064, False),
                       dict(_VIT25, intermediate_size=3456)),
    "qwen2.5-vl-72b": ("qwen2_5_vl", _text(8192, 29568, 80, 64, 8, 152064, False),
                       dict(_VIT25, intermediate_size=3456)),
}

