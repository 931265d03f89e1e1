"""Linear layer with HF weight layout (out_features, in_features): y = x @ W^T + b."""
import paddle
import paddle.nn as nn

_INIT = nn.initializer.Normal(mean=0.0, std=0.02)


class Linear(nn.Layer):
    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = self.create_parameter([out_features, in_features], default_initializer=_INIT)
        self.bias = self.create_parameter([out_features], is_bias=True) if bias else None

    def forward(self, x):
        y = paddle.matmul(x, self.weight, transpose_y=True)
        return y + self.bias if self.bias is not None else y
