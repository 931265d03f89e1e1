"""Split a built (still unloaded) model's decoder for this rank (layers/parallel.py says how)."""
from ..distributed import TensorParallel
from ..layers.attention import Attention
from ..layers.mlp import GatedMLP
from ..layers.parallel import DecoderSplit, reduce_output


def split_decoder(model, tp: TensorParallel) -> DecoderSplit:
    """Replace every decoder layer's attention and MLP by this rank's share: the local heads and
    intermediate columns, o_proj and down_proj all-reduced. Build the model under paddle.LazyGuard
    first (build_model does), so the whole-size layers replaced here are never allocated."""
    text = model.config.text
    split = DecoderSplit.of(text, tp)
    for layer in model.model.layers:
        layer.self_attn = Attention(text.hidden_size, split.local_heads, split.local_kv_heads, text.head_dim,
                                    model.quant, model.precision)
        layer.mlp = GatedMLP(text.hidden_size, split.local_intermediate, text.hidden_act, quant=model.quant,
                             precision=model.precision)
        reduce_output(layer.self_attn.o_proj)
        reduce_output(layer.mlp.down_proj)
        layer.fusable = False           # the fused decoder ops have no all-reduce inside
    model.tp = tp
    return split
