"""Keras autoencoders as ONNX graphs, scored by ONNX Runtime.

Streaming scores one window at a time; a Keras call costs about 0.3-0.8 ms of framework
overhead per window, ONNX Runtime about 0.03 ms, and gives the same numbers for a window
whatever the batch it comes in. Training exports the fitted model with :func:`to_onnx`;
streaming loads the graph alone, without importing TensorFlow.

Only the layers our autoencoders use are translated (Dense, LSTM, RepeatVector,
TimeDistributed(Dense)); anything else raises ``NotImplementedError``. The graph takes
``windows`` ``(batch, window)`` float32 and returns the reconstruction, same shape.
"""

from __future__ import annotations

import numpy as np

OPSET = 17
IR_VERSION = 8  # the oldest that carries opset 17: readable by older ONNX Runtime releases
ACTIVATIONS = {"linear": None, "relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid"}


class _Graph:
    """Collects nodes and constants; names are generated so callers pass tensors around."""

    def __init__(self):
        self.nodes, self.constants, self._count = [], [], 0

    def name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def constant(self, value: np.ndarray, prefix: str = "const") -> str:
        from onnx import numpy_helper

        name = self.name(prefix)
        self.constants.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, kind: str, inputs: list[str], outputs: int = 1, **attributes) -> list[str]:
        from onnx import helper

        names = [self.name(kind.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(kind, inputs, names, **attributes))
        return names

    def axes(self, *axes: int) -> str:
        return self.constant(np.array(axes, dtype=np.int64), "axes")


def _activation(graph: _Graph, tensor: str, layer) -> str:
    name = layer.get_config().get("activation", "linear")
    if name not in ACTIVATIONS:
        raise NotImplementedError(f"ONNX export: activation {name!r} of layer {layer.name} is not supported")
    return graph.op(ACTIVATIONS[name], [tensor])[0] if ACTIVATIONS[name] else tensor


def _dense(graph: _Graph, tensor: str, layer) -> str:
    """Dense on (batch, features) or, applied per time step, on (time, batch, features)."""
    weights = layer.get_weights()
    out = graph.op("MatMul", [tensor, graph.constant(weights[0].astype(np.float32), "kernel")])[0]
    if len(weights) > 1:
        out = graph.op("Add", [out, graph.constant(weights[1].astype(np.float32), "bias")])[0]
    return _activation(graph, out, layer)


def _gates(array: np.ndarray) -> np.ndarray:
    """Keras packs LSTM gates as (input, forget, cell, output) columns; ONNX wants (i, o, f, c) rows."""
    i, f, c, o = np.split(array, 4, axis=-1)
    return np.concatenate([i, o, f, c], axis=-1).T.astype(np.float32)


def _lstm(graph: _Graph, tensor: str, layer) -> tuple[str, bool]:
    """LSTM on (time, batch, features); returns its output and whether it is still a sequence."""
    config = layer.get_config()
    expected = {"activation": "tanh", "recurrent_activation": "sigmoid", "go_backwards": False,
                "return_state": False}
    for key, value in expected.items():
        if config.get(key, value) != value:
            raise NotImplementedError(f"ONNX export: LSTM {layer.name} has {key}={config[key]!r}; "
                                      f"only {value!r} is supported")
    weights = layer.get_weights()
    units = config["units"]
    bias = _gates(weights[2][None])[:, 0] if config.get("use_bias", True) else np.zeros(4 * units, np.float32)
    sequence, last = graph.op("LSTM", [
        tensor,
        graph.constant(_gates(weights[0])[None], "W"),
        graph.constant(_gates(weights[1])[None], "R"),
        graph.constant(np.concatenate([bias, np.zeros(4 * units, np.float32)])[None], "B"),
    ], outputs=2, hidden_size=units)
    if config.get("return_sequences", False):
        return graph.op("Squeeze", [sequence, graph.axes(1)])[0], True  # (time, batch, units)
    return graph.op("Squeeze", [last, graph.axes(0)])[0], False  # (batch, units)


def to_onnx(model, window: int) -> bytes:
    """Return the serialised ONNX graph of a Keras ``Sequential`` autoencoder over ``window`` points."""
    from onnx import TensorProto, helper

    graph = _Graph()
    tensor, is_sequence = "windows", False
    if len(model.input_shape) == 3:  # (batch, time, 1): the layout ONNX's LSTM wants is (time, batch, 1)
        tensor = graph.op("Transpose", [graph.op("Unsqueeze", [tensor, graph.axes(2)])[0]], perm=[1, 0, 2])[0]
        is_sequence = True
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Dense":
            tensor = _dense(graph, tensor, layer)
        elif kind == "TimeDistributed" and type(layer.layer).__name__ == "Dense" and is_sequence:
            tensor = _dense(graph, tensor, layer.layer)
        elif kind == "LSTM" and is_sequence:
            tensor, is_sequence = _lstm(graph, tensor, layer)
        elif kind == "RepeatVector" and not is_sequence:
            steps = graph.constant(np.array([layer.get_config()["n"], 1, 1], dtype=np.int64), "repeats")
            tensor = graph.op("Tile", [graph.op("Unsqueeze", [tensor, graph.axes(0)])[0], steps])[0]
            is_sequence = True
        else:
            raise NotImplementedError(f"ONNX export: layer {layer.name} ({kind}) is not supported here")
    if is_sequence:  # (time, batch, 1) -> (batch, time)
        tensor = graph.op("Transpose", [graph.op("Squeeze", [tensor, graph.axes(2)])[0]], perm=[1, 0])[0]
    graph.nodes.append(helper.make_node("Identity", [tensor], ["reconstruction"]))
    onnx_graph = helper.make_graph(
        graph.nodes, "autoencoder",
        [helper.make_tensor_value_info("windows", TensorProto.FLOAT, [None, window])],
        [helper.make_tensor_value_info("reconstruction", TensorProto.FLOAT, [None, window])],
        graph.constants)
    onnx_model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                   producer_name="anomaly")
    onnx_model.ir_version = IR_VERSION
    return onnx_model.SerializeToString()


def session(graph: bytes):
    """Return an ONNX Runtime session for ``graph`` on the CPU.

    One thread per session: the ensemble scores parts of a block on one thread per core
    (measured here: 12.5 core-seconds per million LSTM windows either way, but its own
    threads would wait for each other while the forest and the output hold a core).
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # parallelism comes from the ensemble scoring parts side by side
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
