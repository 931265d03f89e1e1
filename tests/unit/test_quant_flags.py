"""The quantization flags of every command that loads a model: the lm_head is quantized by default
with a quant type, --no-quantize-lm-head keeps it float, and the defaults match Predictor's."""
import inspect

import pytest

from paddle_qwenvl import Predictor
from paddle_qwenvl.cli import build_parser
from paddle_qwenvl.cli import paddlemix
from paddle_qwenvl.cli.common import quant_options
from paddle_qwenvl.quantization import make_quant_config

# each command with the arguments it needs besides the quantization flags
COMMANDS = {"run": ["--prompt", "hi"], "chat": [], "bench": [], "serve": [], "webui": [],
            "export": ["SRC", "OUT"], "quantize": ["SRC", "OUT"]}


def parse(command, *flags):
    return build_parser().parse_args([command, *COMMANDS[command], *flags])


def deploy_parse(family, *flags):
    return paddlemix.build_parser(family).parse_args(["--model_name_or_path", "M", *flags])


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_quantizes_the_lm_head_by_default(command):
    assert parse(command, "--quant-type", "weight_only_int4").quantize_lm_head is True
    assert parse(command, "--quant-type", "weight_only_int4", "--no-quantize-lm-head").quantize_lm_head is False
    assert parse(command, "--quantize-lm-head").quantize_lm_head is True        # the old switch still parses


@pytest.mark.parametrize("family", sorted(paddlemix.FAMILIES))
def test_deploy_scripts_take_both_spellings(family):
    assert deploy_parse(family, "--quant_type", "weight_only_int8").quantize_lm_head is True
    assert deploy_parse(family, "--no-quantize_lm_head").quantize_lm_head is False
    assert deploy_parse(family, "--no-quantize-lm-head").quantize_lm_head is False
    assert deploy_parse(family, "--quantize_lm_head").quantize_lm_head is True


def test_cli_default_is_predictors_default():
    default = inspect.signature(Predictor.from_pretrained).parameters["quantize_lm_head"].default
    options = quant_options(parse("run", "--quant-type", "weight_only_int8"))
    assert options["quantize_lm_head"] is default is True
    assert make_quant_config(**{k.replace("quant_group_size", "group_size"): v for k, v in options.items()}) == \
        make_quant_config("weight_only_int8")


def test_no_quant_type_means_nothing_quantized():
    options = quant_options(parse("run"))
    assert options["quant_type"] is None and options["quantize_lm_head"] is True
    assert make_quant_config(None, quantize_lm_head=options["quantize_lm_head"]) is None
