"""Our ops inside a static graph: paddle.jit.to_static(full_graph=True), then jit.save and
paddle.inference in a fresh process that loads the op library first (without it the saved graph's
custom ops have no kernel)."""
import subprocess
import sys

import numpy as np
import paddle
import pytest

from paddle_qwenvl.layers.linear import make_linear
from paddle_qwenvl.layers.mlp import GatedMLP
from paddle_qwenvl.layers.norm import RMSNorm
from paddle_qwenvl.ops._build import build_info, compiled_ops
from paddle_qwenvl.quantization import QuantConfig

needs_ops = pytest.mark.skipif(compiled_ops() is None or not build_info()["onednn"],
                               reason="compiled ops (with oneDNN) unavailable")
HIDDEN, OUT = 128, 96
OUR_OPS = ("pqv_add_rms_norm", "pqv_weight_only_int8", "pqv_linear", "pqv_swiglu")


class Block(paddle.nn.Layer):
    """add + RMSNorm, then an int8 weight-only projection and a float32 SwiGLU MLP."""

    def __init__(self):
        super().__init__()
        self.norm = RMSNorm(HIDDEN)
        self.proj = make_linear(HIDDEN, OUT, True, QuantConfig("weight_only_int8"))
        self.mlp = GatedMLP(HIDDEN, 64)

    def forward(self, x, residual):
        h, residual = self.norm(x, residual)
        return self.proj(h), self.mlp(h), residual


def make_block():
    paddle.seed(0)
    block = Block()
    block.proj.load_weight(paddle.randn([OUT, HIDDEN]) * 0.05)
    block.eval()
    return block


SPEC = [paddle.static.InputSpec([None, HIDDEN], "float32", "x"),
        paddle.static.InputSpec([None, HIDDEN], "float32", "residual")]

INFER = """
import sys, numpy as np
from paddle_qwenvl.ops._build import compiled_ops
assert compiled_ops() is not None          # registers our ops with this process
from paddle import inference
prefix = sys.argv[1]
config = inference.Config(prefix + ".json", prefix + ".pdiparams")
config.disable_glog_info()
predictor = inference.create_predictor(config)
inputs = np.load(prefix + "_in.npz")
for name in predictor.get_input_names():
    predictor.get_input_handle(name).copy_from_cpu(inputs[name])
predictor.run()
np.savez(prefix + "_out.npz", *[predictor.get_output_handle(n).copy_to_cpu() for n in predictor.get_output_names()])
"""


@needs_ops
def test_to_static_full_graph_matches_dygraph_and_runs_in_paddle_inference(tmp_path):
    block = make_block()
    rng = np.random.default_rng(0)
    x, residual = (rng.standard_normal((5, HIDDEN)).astype("float32") for _ in range(2))
    want = [t.numpy() for t in block(paddle.to_tensor(x), paddle.to_tensor(residual))]

    static = paddle.jit.to_static(block, input_spec=SPEC, full_graph=True)
    got = [t.numpy() for t in static(paddle.to_tensor(x), paddle.to_tensor(residual))]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)

    prefix = str(tmp_path / "block")
    paddle.jit.save(static, prefix)
    graph = (tmp_path / "block.json").read_text()
    assert all(op in graph for op in OUR_OPS), "the saved graph should call our ops, not the references"
    np.savez(prefix + "_in.npz", x=x, residual=residual)
    done = subprocess.run([sys.executable, "-c", INFER, prefix], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    outs = np.load(prefix + "_out.npz")
    for i, w in enumerate(want):
        np.testing.assert_allclose(outs[f"arr_{i}"], w, rtol=1e-6, atol=1e-6)
