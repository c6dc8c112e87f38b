"""The frameworks convcpu is measured against (optional: each returns None when
its package is missing).  Used only by bench/, never by the library."""
import numpy as np


def torch_conv(x, w, stride, padding, dilation, groups, threads, nspatial=2):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    fn = torch.nn.functional.conv2d if nspatial == 2 else torch.nn.functional.conv1d

    def run():
        with torch.inference_mode():
            return fn(xt, wt, None, stride, padding, dilation, groups)
    return run


def ort_graph(nodes, x, initializers, threads):
    """An ONNX Runtime session of `nodes` (helper.make_node) reading input "x"
    and writing "y", the other operands as initializers {name: array}, default
    graph optimisation, `threads` intra-op threads.  Returns a callable, or None
    without onnxruntime."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    elem = TensorProto.FLOAT if x.dtype == np.float32 else TensorProto.DOUBLE
    graph = helper.make_graph(
        nodes, "bench", [helper.make_tensor_value_info("x", elem, list(x.shape))],
        [helper.make_tensor_value_info("y", elem, None)],
        initializer=[numpy_helper.from_array(a, n) for n, a in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    feed = {"x": x}

    def run():
        return session.run(None, feed)[0]
    return run


def ort_node(op_type, x, initializers, threads, **attributes):
    """An ONNX Runtime session of one `op_type` node on input x, the other
    operands as initializers (in order); see ort_graph."""
    try:
        from onnx import helper
    except ImportError:
        return None
    names = [f"w{i}" for i in range(len(initializers))]
    node = helper.make_node(op_type, ["x"] + names, ["y"], **attributes)
    return ort_graph([node], x, dict(zip(names, initializers)), threads)


def _pads(padding, nspatial):
    return [padding] * nspatial * 2 if isinstance(padding, int) else list(padding) * 2


def ort_conv(x, w, stride, padding, dilation, groups, threads, nspatial=2):
    """ONNX Runtime Conv (see ort_node)."""
    return ort_node("Conv", x, [w], threads, strides=[stride] * nspatial,
                    pads=_pads(padding, nspatial), dilations=[dilation] * nspatial,
                    group=groups, kernel_shape=list(w.shape[2:]))


def torch_conv_transpose(x, w, stride, padding, threads, nspatial=2):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    fn = (torch.nn.functional.conv_transpose2d if nspatial == 2
          else torch.nn.functional.conv_transpose1d)

    def run():
        with torch.inference_mode():
            return fn(xt, wt, None, stride, padding)
    return run


def ort_conv_transpose(x, w, stride, padding, threads, nspatial=2):
    """ONNX Runtime ConvTranspose (see ort_node)."""
    return ort_node("ConvTranspose", x, [w], threads, strides=[stride] * nspatial,
                    pads=_pads(padding, nspatial), kernel_shape=list(w.shape[2:]))


def sgemm_same_shape(m, n, k, dtype):
    """SciPy's BLAS GEMM C[m, n] = A[m, k] @ B[k, n] (the library convcpu calls),
    on Fortran-ordered operands so nothing is copied; it runs on the BLAS
    threads the caller set (bench sets them to the bench's thread count)."""
    from scipy.linalg import blas
    gemm = blas.sgemm if dtype == np.float32 else blas.dgemm
    rng = np.random.default_rng(0)
    a = np.asfortranarray(rng.standard_normal((m, k)).astype(dtype))
    b = np.asfortranarray(rng.standard_normal((k, n)).astype(dtype))
    c = np.asfortranarray(np.empty((m, n), dtype))

    def run():
        return gemm(1.0, a, b, c=c, overwrite_c=True)
    return run
